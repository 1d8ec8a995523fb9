using System.Net;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Api;

/// <summary>A database failure after signing (disk full, crash) must leave no trace: no certificate
/// record, the token unspent, the serial never handed out.</summary>
public class EnrollmentAtomicityTests : IClassFixture<CertPortalApp>
{
    private readonly CertPortalApp _app;
    public EnrollmentAtomicityTests(CertPortalApp app) => _app = app;

    /// <summary>SQLite itself refuses the certificate's insert (a trigger that aborts it), whichever way the row is written.</summary>
    private async Task FailCertificateInsertsAsync(string email, bool armed)
    {
        await using var scope = _app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        await db.Database.ExecuteSqlRawAsync(armed
            ? $"CREATE TRIGGER fail_certificate_insert BEFORE INSERT ON \"Certificates\" WHEN NEW.\"Email\" = '{email}' " +
              "BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END"
            : "DROP TRIGGER fail_certificate_insert");
    }

    [Fact]
    public async Task A_failure_while_recording_the_certificate_rolls_back_the_token_spend()
    {
        var token = await _app.CreateTokenAsync("atomic@example.test", "signing");
        var csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem("atomic@example.test");
        await FailCertificateInsertsAsync("atomic@example.test", armed: true);
        var failed = await _app.PostEnrollmentAsync(token.Token, csr);
        await FailCertificateInsertsAsync("atomic@example.test", armed: false);
        var problem = await Http.AssertProblem(failed, HttpStatusCode.InternalServerError);
        Assert.DoesNotContain("simulated", problem.ToString()); // no internals leak

        await using (var scope = _app.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            Assert.Equal(0, await db.Certificates.CountAsync(c => c.Email == "atomic@example.test"));
            Assert.Null((await db.EnrollmentTokens.SingleAsync(t => t.Id == token.Id)).UsedAt);
        }
        var ok = await _app.EnrollAsync(token.Token, csr);
        Assert.Equal("valid", (await _app.GetCertificateAsync(ok.SerialNumber)).Status);
    }

    [Fact]
    public async Task Certificates_and_the_CA_survive_a_restart()
    {
        var (issued, _) = await _app.IssueAsync("restart@example.test", "encryption");
        var caBefore = await _app.Client.GetByteArrayAsync("/ca/issuing.crt");
        await _app.StopAsync();
        _app.Start();
        Assert.Equal(caBefore, await _app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        Assert.Equal("valid", (await _app.GetCertificateAsync(issued.SerialNumber)).Status);
        // The CA is kept in the database (shared by every node), its keys encrypted.
        using var scope = _app.Services.CreateScope();
        var stored = await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().SharedSecrets
            .Where(s => s.Name.StartsWith("ca:")).ToListAsync();
        Assert.Equal(2, stored.Count);
        Assert.All(stored, s => Assert.Contains("BEGIN ENCRYPTED PRIVATE KEY", System.Text.Encoding.UTF8.GetString(s.Value)));
        Assert.All(stored, s => Assert.DoesNotContain("BEGIN PRIVATE KEY", System.Text.Encoding.UTF8.GetString(s.Value)));
    }
}
