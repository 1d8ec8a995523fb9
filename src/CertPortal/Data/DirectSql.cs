using System.Data.Common;
using CertPortal.Authority;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;

namespace CertPortal.Data;

/// <summary>The rows of the hot paths (enrollment, token creation, revocation), read and written with one plain ADO.NET command
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

    private const string CertificateColumns =
        "\"SerialNumber\", \"Email\", \"DisplayName\", \"Profile\", \"KeyAlgorithm\", \"SubjectDn\", \"NotBefore\", \"NotAfter\", \"IssuedAt\", " +
        "\"TokenId\", \"Der\", \"Sha256Fingerprint\", \"SpkiSha256\", \"RevokedAt\", \"RevocationReason\", \"RenewalOf\", \"RenewedBy\"";

    /// <summary>The certificate with this serial as committed (in the context's transaction, if it has one), or null.
    /// Revocation reads it once before queueing its change: the key to lock, the policy a hold depends on, the answer.</summary>
    public static async Task<IssuedCertificate?> FindCertificateAsync(CertPortalDbContext db, string serial, CancellationToken ct)
    {
        await db.Database.OpenConnectionAsync(ct);
        try
        {
            await using var command = Command(db, $"SELECT {CertificateColumns} FROM \"Certificates\" WHERE \"SerialNumber\" = @serial", out var sqlite);
            Add(command, "serial", serial);
            await using var reader = await command.ExecuteReaderAsync(ct);
            if (!await reader.ReadAsync(ct)) return null;
            return new IssuedCertificate
            {
                SerialNumber = reader.GetString(0),
                Email = reader.GetString(1),
                DisplayName = reader.GetString(2),
                Profile = Enum.Parse<CertificateProfileName>(reader.GetString(3)),
                KeyAlgorithm = reader.GetString(4),
                SubjectDn = reader.GetString(5),
                NotBefore = Time(reader, 6, sqlite),
                NotAfter = Time(reader, 7, sqlite),
                IssuedAt = Time(reader, 8, sqlite),
                TokenId = reader.IsDBNull(9) ? null : reader.GetGuid(9),
                Der = (byte[])reader[10],
                Sha256Fingerprint = reader.GetString(11),
                SpkiSha256 = reader.IsDBNull(12) ? null : reader.GetString(12),
                RevokedAt = reader.IsDBNull(13) ? null : Time(reader, 13, sqlite),
                RevocationReason = reader.IsDBNull(14) ? null : Enum.Parse<RevocationReason>(reader.GetString(14)),
                RenewalOf = reader.IsDBNull(15) ? null : reader.GetString(15),
                RenewedBy = reader.IsDBNull(16) ? null : reader.GetString(16),
            };
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>Reads a certificate's revocation state into <paramref name="certificate"/>, in the caller's transaction (after
    /// its row lock): the state a revoke, hold or release decides from. False when there is no such certificate.</summary>
    public static async Task<bool> ReadRevocationAsync(CertPortalDbContext db, IssuedCertificate certificate, CancellationToken ct)
    {
        await using var command = Command(db, "SELECT \"RevokedAt\", \"RevocationReason\" FROM \"Certificates\" WHERE \"SerialNumber\" = @serial", out var sqlite);
        Add(command, "serial", certificate.SerialNumber);
        await using var reader = await command.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct)) return false;
        certificate.RevokedAt = reader.IsDBNull(0) ? null : Time(reader, 0, sqlite);
        certificate.RevocationReason = reader.IsDBNull(1) ? null : Enum.Parse<RevocationReason>(reader.GetString(1));
        return true;
    }

    public static Task WriteRevocationAsync(CertPortalDbContext db, IssuedCertificate certificate, CancellationToken ct)
    {
        var command = Command(db, "UPDATE \"Certificates\" SET \"RevokedAt\" = @revoked, \"RevocationReason\" = @reason WHERE \"SerialNumber\" = @serial",
            out var sqlite);
        Add(command, "revoked", Time(certificate.RevokedAt, sqlite));
        Add(command, "reason", certificate.RevocationReason?.ToString());
        Add(command, "serial", certificate.SerialNumber);
        return ExecuteAsync(command, ct);
    }

    /// <summary>Serials of the unexpired certificates for this key that are not revoked for good (valid or on hold), except
    /// <paramref name="exceptSerial"/>: what a keyCompromise must revoke too.</summary>
    public static async Task<List<string>> UnrevokedSerialsWithKeyAsync(CertPortalDbContext db, string spkiSha256, string? exceptSerial,
        DateTimeOffset now, CancellationToken ct)
    {
        await using var command = Command(db, "SELECT \"SerialNumber\" FROM \"Certificates\" WHERE \"SpkiSha256\" = @spki AND \"SerialNumber\" <> @except " +
            "AND \"NotAfter\" > @now AND (\"RevokedAt\" IS NULL OR \"RevocationReason\" = @hold)", out var sqlite);
        Add(command, "spki", spkiSha256);
        // Serials are never empty: "" excludes nothing (and keeps the parameter typed on PostgreSQL).
        Add(command, "except", exceptSerial ?? "");
        Add(command, "now", Time(now, sqlite));
        Add(command, "hold", nameof(RevocationReason.CertificateHold));
        var serials = new List<string>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct)) serials.Add(reader.GetString(0));
        return serials;
    }

    public static async Task<BlockedKey?> FindBlockedKeyAsync(CertPortalDbContext db, string spkiSha256, CancellationToken ct)
    {
        await using var command = Command(db, "SELECT \"KeyAlgorithm\", \"BlockedAt\", \"BlockedBy\", \"Source\", \"Comment\" FROM \"BlockedKeys\" " +
            "WHERE \"SpkiSha256\" = @spki", out var sqlite);
        Add(command, "spki", spkiSha256);
        await using var reader = await command.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct)) return null;
        return new BlockedKey
        {
            SpkiSha256 = spkiSha256,
            KeyAlgorithm = reader.GetString(0),
            BlockedAt = Time(reader, 1, sqlite),
            BlockedBy = reader.GetString(2),
            Source = reader.GetString(3),
            Comment = reader.IsDBNull(4) ? null : reader.GetString(4),
        };
    }

    public static Task InsertBlockedKeyAsync(CertPortalDbContext db, BlockedKey k, CancellationToken ct)
    {
        var command = Command(db, "INSERT INTO \"BlockedKeys\" (\"SpkiSha256\", \"KeyAlgorithm\", \"BlockedAt\", \"BlockedBy\", \"Source\", \"Comment\") " +
            "VALUES (@spki, @alg, @at, @by, @source, @comment)", out var sqlite);
        Add(command, "spki", k.SpkiSha256);
        Add(command, "alg", k.KeyAlgorithm);
        Add(command, "at", Time(k.BlockedAt, sqlite));
        Add(command, "by", k.BlockedBy);
        Add(command, "source", k.Source);
        Add(command, "comment", k.Comment);
        return ExecuteAsync(command, ct);
    }

    /// <summary>A CRL is owed for <paramref name="authority"/> (see <see cref="CrlChange"/>).</summary>
    public static Task InsertCrlChangeAsync(CertPortalDbContext db, string authority, DateTimeOffset at, CancellationToken ct)
    {
        var command = Command(db, "INSERT INTO \"CrlChanges\" (\"Authority\", \"At\") VALUES (@authority, @at)", out var sqlite);
        Add(command, "authority", authority);
        Add(command, "at", Time(at, sqlite));
        return ExecuteAsync(command, ct);
    }

    /// <summary>Inserts the look-up cache's change row and returns its id (RETURNING: SQLite 3.35+ and PostgreSQL), which
    /// the cache needs to recognise its own change when its poll reads it.</summary>
    public static async Task<long> InsertCertificateChangeAsync(CertPortalDbContext db, CertificateChange c, CancellationToken ct)
    {
        await using var command = Command(db, "INSERT INTO \"CertificateChanges\" (\"Email\", \"At\") VALUES (@email, @at) RETURNING \"Id\"", out var sqlite);
        Add(command, "email", c.Email);
        Add(command, "at", Time(c.At, sqlite));
        return Convert.ToInt64(await command.ExecuteScalarAsync(ct), System.Globalization.CultureInfo.InvariantCulture);
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
