using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using static CertPortal.Tests.Infrastructure.WriterGroups;
using static CertPortal.Tests.Postgres.PostgresWriterTests;

namespace CertPortal.Tests.Postgres;

/// <summary>The service on PostgreSQL with an ECDSA issuing CA: enrollments claim their token in the group writer.</summary>
public sealed class EcPostgresApp : PostgresApp
{
    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["Ca:IssuingKeyAlgorithm"] = "EC-P256";
            return settings;
        }
    }
}

/// <summary>On PostgreSQL with an ECDSA issuing key an enrollment reads and spends its token in one statement in the group writer
/// (<see cref="DirectSql.ClaimTokenAsync"/>): a group costs two round trips (the claims; then the rows and the COMMIT) and no token read,
/// and every outcome is the one the token read gave.</summary>
public sealed class PostgresTokenClaimTests(EcPostgresApp app) : FastPath.TokenClaimTests<EcPostgresApp>(app), IClassFixture<EcPostgresApp>
{
    protected override long TokenReads => App.Service<PostgresReadConnections>().Reads;

    private const string Claim = "UPDATE \"EnrollmentTokens\" SET \"UsedAt\" = $1, \"CertificateSerial\" = $2 WHERE \"TokenHash\" = $3";
    private const string TokenRead = "FROM \"EnrollmentTokens\" WHERE \"TokenHash\" =";

    [Fact]
    public async Task A_group_of_enrollments_claims_its_tokens_in_one_round_trip_and_sends_its_rows_with_the_commit_in_a_second()
    {
        var readers = App.Service<PostgresReadConnections>();
        var marker = Guid.NewGuid().ToString("N")[..8];
        var emails = Enumerable.Range(0, 6).Select(i => $"claim{i}.{marker}@example.test").ToList();
        var tokens = await Task.WhenAll(emails.Select(e => App.CreateTokenAsync(e, "signing")));
        var reads = readers.Reads;
        await using var commands = new NpgsqlCommands(Database());

        var (issued, commits) = await EnrollInOneGroupAsync(App.Services,
            [.. tokens.Select((t, i) => (t.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(emails[i])))]);
        Assert.All(issued, e => Assert.True(e.Succeeded, e.Failure?.Detail));
        Assert.Equal(2, commits); // the gate's group, then one for the six

        // No token read; one batch with each key's lock and each claim, answered; one with every row and the COMMIT.
        Assert.Equal(reads, readers.Reads);
        Assert.DoesNotContain(commands.Texts, t => t.Contains(TokenRead, StringComparison.Ordinal) && !t.Contains(Claim, StringComparison.Ordinal));
        var claims = Assert.Single(commands.Texts, t => t.Contains(Claim, StringComparison.Ordinal));
        Assert.Equal(6, Occurrences(claims, Claim));
        Assert.Equal(6, Occurrences(claims, "pg_advisory_xact_lock"));
        Assert.DoesNotContain("INSERT INTO", claims, StringComparison.Ordinal);
        var rows = Assert.Single(commands.Texts, t => t.Contains("INSERT INTO \"Certificates\"", StringComparison.Ordinal));
        Assert.Equal(6, Occurrences(rows, "INSERT INTO \"Certificates\""));
        Assert.Equal(6, Occurrences(rows, "INSERT INTO \"AuditEvents\""));
        Assert.Equal(6, Occurrences(rows, "INSERT INTO \"CertificateChanges\""));
        Assert.True(rows.LastIndexOf("COMMIT", StringComparison.Ordinal) > rows.LastIndexOf("INSERT INTO", StringComparison.Ordinal), rows);
        await using (var scope = App.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            var stored = await db.Certificates.Where(c => c.Email.EndsWith($".{marker}@example.test")).ToListAsync();
            Assert.Equal(issued.Select(e => e.Value!.SerialNumber).Order(), stored.Select(c => c.SerialNumber).Order());
            Assert.Equal(6, await db.AuditEvents.CountAsync(a => a.Action == "certificate.issued" && a.Details!.Contains(marker)));
            var spent = await db.EnrollmentTokens.Where(t => t.Email.EndsWith($".{marker}@example.test")).ToListAsync();
            Assert.All(spent, t => Assert.Equal(issued[emails.IndexOf(t.Email)].Value!.SerialNumber, t.CertificateSerial));
        }
    }

    private string Database() => new NpgsqlConnectionStringBuilder(App.Service<CertPortalOptions>().Database.ConnectionString).Database!;
}
