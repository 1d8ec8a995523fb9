using CertPortal.Auditing;
using CertPortal.Data;
using CertPortal.Security;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Gal;

public sealed record PublicationView(long Id, string Kind, string Key, string Reason, string? SerialNumber, DateTimeOffset CreatedAt,
    DateTimeOffset NextAttemptAt, int Attempts, string? LastError, string State);

public sealed record PublicationQueue(bool DirectoryConfigured, int Pending, int Failing, int Scheduled, IReadOnlyList<PublicationView> Items);

public sealed record ResyncStarted(int Queued);

public static class DirectoryPublicationApi
{
    public static IEndpointRouteBuilder MapDirectoryPublicationApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/v1/directory").WithTags("Directory (LDAP)");
        group.MapGet("/publications", List).RequireAuthorization(Policies.Audit).WithName("DirectoryPublications")
            .WithSummary("What the LDAP directory has yet to learn: pending and failing publications (scheduled expiries are counted, not listed).");
        group.MapPost("/resync", Resync).RequireAuthorization(Policies.Admin).WithName("DirectoryResync")
            .WithSummary("Make the directory match the database exactly: add what is missing, remove our certificates that should not be there.");
        return app;
    }

    private static async Task<Ok<PublicationQueue>> List(CertPortalDbContext db, TimeProvider time, DirectoryOptions directory, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var open = db.DirectoryPublications.AsNoTracking().Where(p => p.CompletedAt == null);
        var scheduled = await open.CountAsync(p => p.Attempts == 0 && p.NextAttemptAt > now, ct);
        // Counted in the database, not from the rows listed: after an outage there are more than the list's 500, and the counts
        // stopped at 500 too.
        var pending = await open.CountAsync(p => p.Attempts == 0 && p.NextAttemptAt <= now, ct);
        var failing = await open.CountAsync(p => p.Attempts > 0, ct);
        var rows = await open.Where(p => p.Attempts > 0 || p.NextAttemptAt <= now).OrderBy(p => p.Id).Take(500).ToListAsync(ct);
        var items = rows.Select(p => new PublicationView(p.Id, p.Kind, p.Key, p.Reason, p.SerialNumber, p.CreatedAt, p.NextAttemptAt,
            p.Attempts, p.LastError, p.Attempts > 0 ? "failing" : "pending")).ToList();
        return TypedResults.Ok(new PublicationQueue(directory.IsEnabled, pending, failing, scheduled, items));
    }

    private static async Task<Results<Accepted<ResyncStarted>, ProblemHttpResult>> Resync(
        CertPortalDbContext db, TimeProvider time, DirectoryOptions directory, HttpContext http, CancellationToken ct)
    {
        if (!directory.IsEnabled)
            return Failure.Conflict("No LDAP directory is configured (CertPortal:Directory:Url); there is nothing to resync.").ToProblem();
        var now = time.GetUtcNow();
        AuditLog.Record(db, now, AuditLog.ActorOf(http.User), AuditActions.DirectoryResync, "directory");
        var queued = await DirectoryOutbox.EnqueueResyncAsync(db, now, ct);
        return TypedResults.Accepted("/api/v1/directory/publications", new ResyncStarted(queued));
    }
}
