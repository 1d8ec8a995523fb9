using System.Data.Common;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

namespace CertPortal.Tests.Data;

/// <summary>The migration that adds <see cref="IssuedCertificate.MailboxValidatedAt"/> fills it for the rows already there: a
/// token-enrolled certificate from its token's creation, one without a token (or whose token row is gone) from its notBefore, and a
/// renewal, however deep, from the root of its chain (its own notBefore would give old chains a fresh validation). Each provider has
/// its own migration with its own SQL, so each is run on a real database holding rows written as the previous schema held them: a
/// real SQLite file, and a private PostgreSQL cluster (where the backfill had only ever run on empty databases).</summary>
public sealed class MailboxValidatedAtMigrationTests(PostgresServer postgres) : IClassFixture<PostgresServer>, IDisposable
{
    private readonly string _file = Path.Combine(Path.GetTempPath(), $"certportal-validated-{Guid.NewGuid():N}.db");

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        File.Delete(_file);
    }

    [Fact]
    public async Task Sqlite_certificates_and_renewal_chains_get_the_validation_of_their_root()
    {
        var options = new DbContextOptionsBuilder<SqliteCertPortalDbContext>().UseSqlite($"Data Source={_file};Pooling=False").Options;
        await using var db = new SqliteCertPortalDbContext(options);
        // The SQLite schema stores times as UTC ticks and GUIDs as upper-case text (EF Core's mapping, CertPortalDbContext).
        await CheckAsync(db, "20261207203933_InvitationIdempotency", t => t.UtcTicks, g => g.ToString().ToUpperInvariant());
    }

    [Fact]
    public async Task Postgresql_certificates_and_renewal_chains_get_the_validation_of_their_root()
    {
        var options = new DbContextOptionsBuilder<NpgsqlCertPortalDbContext>()
            .UseNpgsql(postgres.ConnectionString("validated_" + Guid.NewGuid().ToString("N")[..8])).Options;
        await using var db = new NpgsqlCertPortalDbContext(options);
        await CheckAsync(db, "20261207204120_InvitationIdempotency", t => t, g => g);
    }

    private static async Task CheckAsync(CertPortalDbContext db, string migrationBefore, Func<DateTimeOffset, object> time, Func<Guid, object> id)
    {
        var migrator = db.GetService<IMigrator>();
        await migrator.MigrateAsync(migrationBefore);
        Assert.Contains("MailboxValidatedAt", (await db.Database.GetPendingMigrationsAsync()).First());

        var annMade = new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero);
        var annEnrolled = annMade.AddDays(3);
        var bobMade = annMade.AddDays(40);
        var bobEnrolled = bobMade.AddDays(1);
        var imported = annMade.AddDays(10);
        var purgedEnrolled = annMade.AddDays(20);
        var ann = Guid.NewGuid();
        var bob = Guid.NewGuid();
        var purged = Guid.NewGuid();

        var connection = db.Database.GetDbConnection();
        await db.Database.OpenConnectionAsync();
        try
        {
            await InsertToken(connection, time, id(ann), "ann@example.com", annMade, annEnrolled);
            await InsertToken(connection, time, id(bob), "bob@example.com", bobMade, bobEnrolled);
            // Ann's chain: enrolled with her token, renewed twice (each renewal has no token, RenewalOf points back, RenewedBy forward).
            await InsertCertificate(connection, time, "0A", "ann@example.com", annEnrolled, id(ann), renewalOf: null, renewedBy: "0B");
            await InsertCertificate(connection, time, "0B", "ann@example.com", annEnrolled.AddDays(300), null, renewalOf: "0A", renewedBy: "0C");
            await InsertCertificate(connection, time, "0C", "ann@example.com", annEnrolled.AddDays(600), null, renewalOf: "0B", renewedBy: null);
            // Bob: another token, later, and one renewal; his chain must not take Ann's time nor hers his.
            await InsertCertificate(connection, time, "1A", "bob@example.com", bobEnrolled, id(bob), renewalOf: null, renewedBy: "1B");
            await InsertCertificate(connection, time, "1B", "bob@example.com", bobEnrolled.AddDays(300), null, renewalOf: "1A", renewedBy: null);
            // No token at all (TokenId is nullable), and a token whose row is gone: both from their own notBefore.
            await InsertCertificate(connection, time, "2A", "cy@example.com", imported, null, renewalOf: null, renewedBy: null);
            await InsertCertificate(connection, time, "3A", "di@example.com", purgedEnrolled, id(purged), renewalOf: null, renewedBy: "3B");
            await InsertCertificate(connection, time, "3B", "di@example.com", purgedEnrolled.AddDays(300), null, renewalOf: "3A", renewedBy: null);
            // A renewal whose predecessor row is missing: no chain reaches it, so it keeps the column's default (year 1, as documented in
            // the migration), which refuses its renewal.
            await InsertCertificate(connection, time, "4B", "ed@example.com", imported.AddDays(300), null, renewalOf: "4A", renewedBy: null);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }

        await migrator.MigrateAsync();

        var validated = await db.Certificates.AsNoTracking().ToDictionaryAsync(c => c.SerialNumber, c => c.MailboxValidatedAt);
        var expected = new Dictionary<string, DateTimeOffset>
        {
            ["0A"] = annMade, ["0B"] = annMade, ["0C"] = annMade,
            ["1A"] = bobMade, ["1B"] = bobMade,
            ["2A"] = NotBefore(imported),
            ["3A"] = NotBefore(purgedEnrolled), ["3B"] = NotBefore(purgedEnrolled),
            ["4B"] = new DateTimeOffset(1, 1, 1, 0, 0, 0, TimeSpan.Zero),
        };
        Assert.Equal(expected.OrderBy(e => e.Key), validated.OrderBy(e => e.Key));
    }

    private static DateTimeOffset NotBefore(DateTimeOffset issued) => issued.AddMinutes(-1);

    private static Task InsertToken(DbConnection connection, Func<DateTimeOffset, object> time, object id, string email, DateTimeOffset made,
        DateTimeOffset used) =>
        Execute(connection, """
            INSERT INTO "EnrollmentTokens" ("Id", "TokenHash", "Email", "DisplayName", "Profile", "CreatedAt", "CreatedBy", "ExpiresAt", "UsedAt")
            VALUES (@id, @hash, @email, '', 'Signing', @made, 'admin', @expires, @used)
            """, ("id", id), ("hash", Guid.NewGuid().ToByteArray()), ("email", email), ("made", time(made)), ("expires", time(made.AddDays(30))),
            ("used", time(used)));

    private static Task InsertCertificate(DbConnection connection, Func<DateTimeOffset, object> time, string serial, string email,
        DateTimeOffset issued, object? token, string? renewalOf, string? renewedBy) =>
        Execute(connection, """
            INSERT INTO "Certificates" ("SerialNumber", "Email", "DisplayName", "Profile", "KeyAlgorithm", "SubjectDn", "NotBefore", "NotAfter",
              "IssuedAt", "TokenId", "Der", "RenewalOf", "RenewedBy")
            VALUES (@serial, @email, '', 'Signing', 'EC-P256', '', @notBefore, @notAfter, @issued, @token, @der, @renewalOf, @renewedBy)
            """, ("serial", serial), ("email", email), ("notBefore", time(NotBefore(issued))), ("notAfter", time(issued.AddDays(365))),
            ("issued", time(issued)), ("token", token), ("der", new byte[] { 0x30 }), ("renewalOf", renewalOf), ("renewedBy", renewedBy));

    private static async Task Execute(DbConnection connection, string sql, params (string Name, object? Value)[] parameters)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            var parameter = command.CreateParameter();
            parameter.ParameterName = name;
            parameter.Value = value ?? DBNull.Value;
            command.Parameters.Add(parameter);
        }
        await command.ExecuteNonQueryAsync();
    }
}
