using CertPortal.Data;
using CertPortal.Security;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Data;

/// <summary>Every enrollment, revocation and token creation writes an audit event inside the group writer's turn, so each
/// index of AuditEvents is one more page per group commit. The one left serves the sign-in throttle, and holds only
/// sign-in events; the console and the API page the log by id.</summary>
public sealed class AuditIndexTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Fact]
    public async Task Only_sign_in_events_are_indexed_and_the_throttle_reads_them_through_that_index()
    {
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var indexes = await db.Database.SqlQueryRaw<string>(
            "SELECT sql AS \"Value\" FROM sqlite_master WHERE type = 'index' AND tbl_name = 'AuditEvents' AND sql IS NOT NULL").ToListAsync();
        Assert.Equal(["CREATE INDEX \"IX_AuditEvents_SignIns\" ON \"AuditEvents\" (\"Actor\", \"At\") " +
            "WHERE \"Action\" IN ('account.sign-in-failed', 'account.signed-in')"], indexes);

        // The throttle's query as EF Core sends it, its parameters written in: SQLite uses a partial index only where the
        // query's WHERE implies the index's, so a change to either could leave the throttle scanning the whole log.
        var plan = await SqlitePlans.PlanAsync(db, SignInThrottle.SignInsSince(db, "someone", DateTimeOffset.UtcNow.AddMinutes(-15)));
        Assert.Contains(plan, d => d.Contains("USING INDEX IX_AuditEvents_SignIns (Actor=? AND At>?)", StringComparison.Ordinal));
    }
}
