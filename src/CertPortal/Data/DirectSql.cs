using System.Data.Common;
using CertPortal.Authority;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;

namespace CertPortal.Data;

/// <summary>The rows of the two hot paths, enrollment and token creation, read and written with one plain ADO.NET command
/// each on the context's connection and transaction, with no change tracking and no SQL generation. In a profile of the
/// enrollment path EF Core's SaveChanges, its LINQ-to-SQL for the token spend and its materialisers cost more CPU than
/// the database work itself. Everything else keeps using EF Core. The SQL is the same for both providers (quoted
/// identifiers, named parameters); only how values are stored differs, and that mirrors the EF Core model exactly:
/// SQLite keeps times as UTC ticks (INTEGER) and GUIDs as upper-case TEXT, PostgreSQL has timestamptz and uuid.</summary>
public static class DirectSql
{
    private const string TokenColumns =
        "\"Id\", \"TokenHash\", \"Email\", \"DisplayName\", \"Profile\", \"CreatedAt\", \"CreatedBy\", \"ExpiresAt\", \"UsedAt\", \"RevokedAt\", \"CertificateSerial\", \"RetryPackage\"";

    /// <summary>The token whose secret hashes to <paramref name="hash"/>, whatever its status, or null.</summary>
    public static async Task<EnrollmentToken?> FindTokenByHashAsync(CertPortalDbContext db, byte[] hash, CancellationToken ct)
    {
        await db.Database.OpenConnectionAsync(ct);
        try
        {
            await using var command = Command(db, $"SELECT {TokenColumns} FROM \"EnrollmentTokens\" WHERE \"TokenHash\" = @hash", out var sqlite);
            Add(command, "hash", hash);
            await using var reader = await command.ExecuteReaderAsync(ct);
            if (!await reader.ReadAsync(ct)) return null;
            return new EnrollmentToken
            {
                Id = reader.GetGuid(0),
                TokenHash = (byte[])reader[1],
                Email = reader.GetString(2),
                DisplayName = reader.GetString(3),
                Profile = Enum.Parse<CertificateProfileName>(reader.GetString(4)),
                CreatedAt = Time(reader, 5, sqlite),
                CreatedBy = reader.GetString(6),
                ExpiresAt = Time(reader, 7, sqlite),
                UsedAt = reader.IsDBNull(8) ? null : Time(reader, 8, sqlite),
                RevokedAt = reader.IsDBNull(9) ? null : Time(reader, 9, sqlite),
                CertificateSerial = reader.IsDBNull(10) ? null : reader.GetString(10),
                RetryPackage = reader.IsDBNull(11) ? null : (byte[])reader[11],
            };
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    public static Task InsertTokenAsync(CertPortalDbContext db, EnrollmentToken t, CancellationToken ct)
    {
        var command = Command(db, $"INSERT INTO \"EnrollmentTokens\" ({TokenColumns}) VALUES " +
            "(@id, @hash, @email, @name, @profile, @created, @by, @expires, @used, @revoked, @serial, @retry)", out var sqlite);
        Add(command, "id", Id(t.Id, sqlite));
        Add(command, "hash", t.TokenHash);
        Add(command, "email", t.Email);
        Add(command, "name", t.DisplayName);
        Add(command, "profile", t.Profile.ToString());
        Add(command, "created", Time(t.CreatedAt, sqlite));
        Add(command, "by", t.CreatedBy);
        Add(command, "expires", Time(t.ExpiresAt, sqlite));
        Add(command, "used", Time(t.UsedAt, sqlite));
        Add(command, "revoked", Time(t.RevokedAt, sqlite));
        Add(command, "serial", t.CertificateSerial);
        Add(command, "retry", t.RetryPackage);
        return ExecuteAsync(command, ct);
    }

    /// <summary>Spends the token for <paramref name="serial"/> if it is still unused, unrevoked and unexpired: the one
    /// conditional UPDATE that decides between concurrent enrollments with one token (SQLite has one writer; PostgreSQL
    /// re-checks the WHERE after taking the row lock, across nodes too). True when this call spent it.</summary>
    public static async Task<bool> SpendTokenAsync(CertPortalDbContext db, Guid id, string serial, DateTimeOffset now, CancellationToken ct)
    {
        await using var command = Command(db, "UPDATE \"EnrollmentTokens\" SET \"UsedAt\" = @now, \"CertificateSerial\" = @serial " +
            "WHERE \"Id\" = @id AND \"UsedAt\" IS NULL AND \"RevokedAt\" IS NULL AND \"ExpiresAt\" > @now", out var sqlite);
        Add(command, "now", Time(now, sqlite));
        Add(command, "serial", serial);
        Add(command, "id", Id(id, sqlite));
        return await command.ExecuteNonQueryAsync(ct) == 1;
    }

    /// <summary>When the key with this SPKI hash was blocked as compromised, or null.</summary>
    public static async Task<DateTimeOffset?> BlockedAtAsync(CertPortalDbContext db, string spkiSha256, CancellationToken ct)
    {
        await using var command = Command(db, "SELECT \"BlockedAt\" FROM \"BlockedKeys\" WHERE \"SpkiSha256\" = @spki", out var sqlite);
        Add(command, "spki", spkiSha256);
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? Time(reader, 0, sqlite) : null;
    }

    public static Task InsertCertificateAsync(CertPortalDbContext db, IssuedCertificate c, CancellationToken ct)
    {
        var command = Command(db, "INSERT INTO \"Certificates\" (\"SerialNumber\", \"Email\", \"DisplayName\", \"Profile\", \"KeyAlgorithm\", " +
            "\"SubjectDn\", \"NotBefore\", \"NotAfter\", \"IssuedAt\", \"TokenId\", \"Der\", \"Sha256Fingerprint\", \"SpkiSha256\", \"RevokedAt\", " +
            "\"RevocationReason\", \"RenewalOf\", \"RenewedBy\") VALUES (@serial, @email, @name, @profile, @alg, @subject, @nbf, @naf, @issued, " +
            "@token, @der, @sha256, @spki, @revoked, @reason, @renewalOf, @renewedBy)", out var sqlite);
        Add(command, "serial", c.SerialNumber);
        Add(command, "email", c.Email);
        Add(command, "name", c.DisplayName);
        Add(command, "profile", c.Profile.ToString());
        Add(command, "alg", c.KeyAlgorithm);
        Add(command, "subject", c.SubjectDn);
        Add(command, "nbf", Time(c.NotBefore, sqlite));
        Add(command, "naf", Time(c.NotAfter, sqlite));
        Add(command, "issued", Time(c.IssuedAt, sqlite));
        Add(command, "token", c.TokenId is { } token ? Id(token, sqlite) : null);
        Add(command, "der", c.Der);
        Add(command, "sha256", c.Sha256Fingerprint);
        Add(command, "spki", c.SpkiSha256);
        Add(command, "revoked", Time(c.RevokedAt, sqlite));
        Add(command, "reason", c.RevocationReason?.ToString());
        Add(command, "renewalOf", c.RenewalOf);
        Add(command, "renewedBy", c.RenewedBy);
        return ExecuteAsync(command, ct);
    }

    public static Task InsertAuditAsync(CertPortalDbContext db, AuditEvent e, CancellationToken ct)
    {
        var command = Command(db, "INSERT INTO \"AuditEvents\" (\"At\", \"Actor\", \"Action\", \"Target\", \"Details\") " +
            "VALUES (@at, @actor, @action, @target, @details)", out var sqlite);
        Add(command, "at", Time(e.At, sqlite));
        Add(command, "actor", e.Actor);
        Add(command, "action", e.Action);
        Add(command, "target", e.Target);
        Add(command, "details", e.Details);
        return ExecuteAsync(command, ct);
    }

    private static DbCommand Command(CertPortalDbContext db, string sql, out bool sqlite)
    {
        var connection = db.Database.GetDbConnection();
        sqlite = connection is SqliteConnection;
        var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = db.Database.CurrentTransaction?.GetDbTransaction();
        return command;
    }

    private static async Task ExecuteAsync(DbCommand command, CancellationToken ct)
    {
        await using (command) await command.ExecuteNonQueryAsync(ct);
    }

    private static void Add(DbCommand command, string name, object? value)
    {
        var p = command.CreateParameter();
        p.ParameterName = name;
        p.Value = value ?? DBNull.Value;
        command.Parameters.Add(p);
    }

    // As the model stores them: SqliteCertPortalDbContext's UtcTicksConverter, EF Core SQLite's TEXT GUIDs (upper case).
    private static object Id(Guid id, bool sqlite) => sqlite ? id.ToString().ToUpperInvariant() : id;

    private static object? Time(DateTimeOffset? t, bool sqlite) =>
        t is not { } value ? null : sqlite ? value.UtcTicks : value.ToUniversalTime();

    private static DateTimeOffset Time(DbDataReader reader, int ordinal, bool sqlite) =>
        sqlite ? new DateTimeOffset(reader.GetInt64(ordinal), TimeSpan.Zero) : reader.GetFieldValue<DateTimeOffset>(ordinal);
}
