using CertPortal.Data;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

namespace CertPortal.Tests.Data;

/// <summary>The migration that adds <see cref="IssuedCertificate.MailboxValidatedAt"/> fills it for the rows already there: a
/// token-enrolled certificate from its token's creation, one without a token row from its notBefore, and a renewal, however deep,
/// from the root of its chain (its own notBefore would give old chains a fresh validation). On a real SQLite file.</summary>
public sealed class MailboxValidatedAtMigrationTests : IDisposable
{
    private readonly string _file = Path.Combine(Path.GetTempPath(), $"certportal-validated-{Guid.NewGuid():N}.db");

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        File.Delete(_file);
    }

    [Fact]
    public async Task Existing_certificates_and_renewal_chains_get_the_validation_of_their_root()
    {
        var options = new DbContextOptionsBuilder<SqliteCertPortalDbContext>().UseSqlite($"Data Source={_file};Pooling=False").Options;
        await using var db = new SqliteCertPortalDbContext(options);
        var migrator = db.GetService<IMigrator>();
        await migrator.MigrateAsync("20261207203933_InvitationIdempotency");

        var tokenMade = new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero);
        var enrolled = tokenMade.AddDays(3);
        var token = Guid.NewGuid();
        await using (var connection = new SqliteConnection($"Data Source={_file};Pooling=False"))
        {
            await connection.OpenAsync();
            await Execute(connection, """
                INSERT INTO "EnrollmentTokens" ("Id", "TokenHash", "Email", "DisplayName", "Profile", "CreatedAt", "CreatedBy", "ExpiresAt", "UsedAt")
                VALUES ($id, x'01', 'ann@example.com', '', 'Signing', $made, 'admin', $expires, $used)
                """, ("$id", token.ToString().ToUpperInvariant()), ("$made", tokenMade.UtcTicks), ("$expires", tokenMade.AddDays(30).UtcTicks),
                ("$used", enrolled.UtcTicks));
            await InsertCertificate(connection, "0A", enrolled, token, renewalOf: null);
            await InsertCertificate(connection, "0B", enrolled.AddDays(300), null, renewalOf: "0A");
            await InsertCertificate(connection, "0C", enrolled.AddDays(600), null, renewalOf: "0B");
            await InsertCertificate(connection, "0D", enrolled.AddDays(10), null, renewalOf: null);
        }

        await migrator.MigrateAsync();

        var validated = await db.Certificates.AsNoTracking().ToDictionaryAsync(c => c.SerialNumber, c => c.MailboxValidatedAt);
        Assert.Equal(tokenMade, validated["0A"]);
        Assert.Equal(tokenMade, validated["0B"]);
        Assert.Equal(tokenMade, validated["0C"]);
        Assert.Equal(enrolled.AddDays(10).AddMinutes(-1), validated["0D"]);
    }

    private static Task InsertCertificate(SqliteConnection connection, string serial, DateTimeOffset issued, Guid? token, string? renewalOf) =>
        Execute(connection, """
            INSERT INTO "Certificates" ("SerialNumber", "Email", "DisplayName", "Profile", "KeyAlgorithm", "SubjectDn", "NotBefore", "NotAfter",
              "IssuedAt", "TokenId", "Der", "RenewalOf")
            VALUES ($serial, 'ann@example.com', '', 'Signing', 'EC-P256', '', $notBefore, $notAfter, $issued, $token, x'00', $renewalOf)
            """, ("$serial", serial), ("$notBefore", issued.AddMinutes(-1).UtcTicks), ("$notAfter", issued.AddDays(365).UtcTicks),
            ("$issued", issued.UtcTicks), ("$token", token?.ToString().ToUpperInvariant()), ("$renewalOf", renewalOf));

    private static async Task Execute(SqliteConnection connection, string sql, params (string Name, object? Value)[] parameters)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters) command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        await command.ExecuteNonQueryAsync();
    }
}
