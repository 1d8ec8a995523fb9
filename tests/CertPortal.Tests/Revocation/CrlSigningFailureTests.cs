using System.Collections.Concurrent;
using System.Net;
using CertPortal.Data;
using CertPortal.Tests.Api;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Postgres;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace CertPortal.Tests.Revocation;

/// <summary>With Crl:PublishDelay 0 and a check interval of an hour, so only the retry this test is about can sign the CRL in time.</summary>
public sealed class CrlSigningFailureApp : PostgresApp
{
    public ConcurrentQueue<string> Logs { get; } = new();

    protected override IDictionary<string, string?> Settings =>
        new Dictionary<string, string?>(base.Settings) { ["Crl:CheckInterval"] = "01:00:00" };

    protected override void ConfigureServices(IServiceCollection services) => CapturingLoggerProvider.AddTo(services, Logs);
}

/// <summary>A revocation whose CRL could not be signed when it was committed (Crl:PublishDelay 0 signs inline): the change is
/// durable, so the call answers with it, and the publisher's own pass signs the CRL at once instead of after the next
/// check interval. PostgreSQL refuses the first CRL insert after the test arms it (a sequence: a failed transaction does
/// not give its value back, so exactly one attempt fails).</summary>
public sealed class CrlSigningFailureTests(CrlSigningFailureApp app) : IClassFixture<CrlSigningFailureApp>
{
    [Fact]
    public async Task A_failed_inline_crl_signing_still_answers_the_durable_revocation_and_the_publisher_signs_at_once()
    {
        var serial = (await app.IssueAsync($"crl.failure.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing")).Cert.SerialNumber;
        var before = ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing.crl"));
        await ExecuteAsync("""
            CREATE SEQUENCE crl_insert_attempts;
            CREATE FUNCTION refuse_first_crl() RETURNS trigger AS $$ BEGIN
              IF nextval('crl_insert_attempts') = 1 THEN RAISE EXCEPTION 'simulated CRL storage failure'; END IF; RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER refuse_first_crl BEFORE INSERT ON "Crls" FOR EACH ROW EXECUTE FUNCTION refuse_first_crl();
            """);

        var revoked = await app.RevokeAsync(serial, "keyCompromise");
        await Http.EnsureStatus(revoked, HttpStatusCode.OK);
        Assert.Equal("revoked", (await app.GetCertificateAsync(serial)).Status);
        Assert.Contains(app.Logs, l => l.StartsWith("Error", StringComparison.Ordinal) && l.Contains("simulated CRL storage failure", StringComparison.Ordinal));

        // Without the retry the CRL would wait for the next check, an hour away.
        ParsedCrl crl;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        do
        {
            await Task.Delay(100);
            crl = ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing.crl"));
        } while (!crl.Entries.ContainsKey(serial) && DateTime.UtcNow < deadline);
        Assert.True(crl.Entries.ContainsKey(serial), "the publisher signed a CRL listing the revocation soon after the failed attempt");
        Assert.True(crl.Number > before.Number);
        Assert.True(await ScalarAsync("SELECT last_value FROM crl_insert_attempts") >= 2, "the trigger refused one insert and passed the next");
    }

    private async Task ExecuteAsync(string sql)
    {
        await using var scope = app.Services.CreateAsyncScope();
        await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().Database.ExecuteSqlRawAsync(sql);
    }

    private async Task<long> ScalarAsync(string sql)
    {
        await using var scope = app.Services.CreateAsyncScope();
        await using var connection = new NpgsqlConnection(scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().Database.GetConnectionString());
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return Convert.ToInt64(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
