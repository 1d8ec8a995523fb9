using System.Data.Common;
using System.Runtime.CompilerServices;
using CertPortal.Authority;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;

namespace CertPortal.Data;

/// <summary>The rows of the hot paths (enrollment, token creation, revocation), read and written with one plain ADO.NET command
/// each on the context's connection and transaction, with no change tracking and no SQL generation. In a profile of the
/// enrollment path EF Core's SaveChanges, its LINQ-to-SQL for the token spend and its materialisers cost more CPU than
/// the database work itself. Everything else keeps using EF Core. The SQL is the same for both providers (quoted
/// identifiers, named parameters); only how values are stored differs, and that mirrors the EF Core model exactly:
/// SQLite keeps times as UTC ticks (INTEGER) and GUIDs as upper-case TEXT, PostgreSQL has timestamptz and uuid.
/// <para>On PostgreSQL every command is a network round trip, and in the group writer each one waits for a server
/// process to be scheduled: under load that wait, not the work, set the writer's pace (a group of token creations took two
/// round trips per token). So inside the writer's transaction (<see cref="BeginDeferring"/>) commands whose answer nobody
/// reads (inserts, locks) are held back and sent, in order, in one batch with the next command that needs an answer
/// (a read, the token spend, any EF Core command, the commit). Order and transaction are unchanged, so every statement
/// sees what the ones before it did; a failing insert fails that batch and with it the group, which the writer retries
/// in halves as before.</para></summary>
public static partial class DirectSql
{
    private const string TokenColumns =
        "\"Id\", \"TokenHash\", \"Email\", \"DisplayName\", \"Profile\", \"CreatedAt\", \"CreatedBy\", \"ExpiresAt\", \"UsedAt\", \"RevokedAt\", \"CertificateSerial\", \"RetryPackage\"";

    /// <summary>The token whose secret hashes to <paramref name="hash"/>, whatever its status, or null; with it the key generation
    /// the escrow policy stores for the token's profile (null: none stored, configuration applies; always null for signing), which
    /// every enrollment asks next: one read (on PostgreSQL one round trip) instead of two.</summary>
    public static async Task<(EnrollmentToken? Token, KeyGenerationPolicy? StoredKeyGeneration)> FindTokenByHashAsync(CertPortalDbContext db,
        byte[] hash, CancellationToken ct)
    {
        await db.Database.OpenConnectionAsync(ct);
        try
        {
            return await ReadTokenByHashAsync(Command(db, TokenByHash, out var sqlite), hash, sqlite, ct);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>As <see cref="FindTokenByHashAsync(CertPortalDbContext, byte[], CancellationToken)"/>, on SQLite, on a connection
    /// kept open for it (with its statement compiled once).</summary>
    public static async Task<(EnrollmentToken? Token, KeyGenerationPolicy? StoredKeyGeneration)> FindTokenByHashAsync(SqliteReadConnections readers,
        byte[] hash, CancellationToken ct)
    {
        var connection = readers.Rent();
        var healthy = false;
        try
        {
            var command = Kept(connection, TokenByHash);
            command.CommandText = TokenByHash;
            var found = await ReadTokenByHashAsync(command, hash, sqlite: true, ct);
            healthy = true;
            return found;
        }
        finally
        {
            readers.Return(connection, healthy);
        }
    }

    /// <summary>As <see cref="FindTokenByHashAsync(CertPortalDbContext, byte[], CancellationToken)"/>, on PostgreSQL, on the data source
    /// kept for it, with the hash as a positional parameter (Npgsql sends such a statement as written, without parsing it).</summary>
    public static async Task<(EnrollmentToken? Token, KeyGenerationPolicy? StoredKeyGeneration)> FindTokenByHashAsync(PostgresReadConnections readers,
        byte[] hash, CancellationToken ct)
    {
        readers.Counted();
        await using var command = readers.DataSource.CreateCommand(TokenByHashPositional);
        command.Parameters.Add(new NpgsqlParameter { Value = hash });
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await ReadTokenAsync(reader, sqlite: false, ct);
    }

    private const string PolicyColumns = "(SELECT \"EncryptionKeyGeneration\" FROM \"EscrowPolicy\" ORDER BY \"Id\" LIMIT 1), " +
        "(SELECT \"DualKeyGeneration\" FROM \"EscrowPolicy\" ORDER BY \"Id\" LIMIT 1)";

    private const string TokenByHash = $"SELECT {TokenColumns}, {PolicyColumns} FROM \"EnrollmentTokens\" WHERE \"TokenHash\" = @hash";

    private static readonly string TokenByHashPositional = TokenByHash.Replace("@hash", "$1", StringComparison.Ordinal);

    private static Task<(EnrollmentToken?, KeyGenerationPolicy?)> ReadTokenByHashAsync(DbCommand command, byte[] hash, bool sqlite, CancellationToken ct)
    {
        Add(command, "hash", hash);
        return ReadAsync(command, (reader, rct) => ReadTokenAsync(reader, sqlite, rct), ct);
    }

    private static async Task<(EnrollmentToken?, KeyGenerationPolicy?)> ReadTokenAsync(DbDataReader reader, bool sqlite, CancellationToken ct)
    {
        if (!await reader.ReadAsync(ct)) return (null, null);
        var token = ReadToken(reader, sqlite);
        var stored = token.Profile switch { CertificateProfileName.Encryption => 12, CertificateProfileName.Dual => 13, _ => -1 };
        return (token, stored < 0 || reader.IsDBNull(stored) ? (KeyGenerationPolicy?)null : Enum.Parse<KeyGenerationPolicy>(reader.GetString(stored)));
    }

    private static EnrollmentToken ReadToken(DbDataReader reader, bool sqlite) => new()
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

    /// <summary>The token spend: the one conditional UPDATE that decides between concurrent enrollments with one token (SQLite has
    /// one writer; PostgreSQL re-checks the WHERE after taking the row lock, across nodes too), only while the key is not blocked.</summary>
    // A token's spend: still usable (not spent, withdrawn or expired) and, by the NOT EXISTS its callers complete, its key not blocked.
    private const string SpendTokenWhere = "UPDATE \"EnrollmentTokens\" SET \"UsedAt\" = @now, \"CertificateSerial\" = @serial WHERE ";
    private const string UsableUnlessBlocked = " AND \"UsedAt\" IS NULL AND \"RevokedAt\" IS NULL AND \"ExpiresAt\" > @now AND NOT EXISTS ";
    private const string SpendTokenUnlessBlocked = SpendTokenWhere + "\"Id\" = @id" + UsableUnlessBlocked;

    /// <summary>An enrollment's decision in the group writer, taken under the key's lock: when the key was blocked as compromised
    /// (then nothing is spent), else whether the token was spent for <paramref name="serial"/> (<see cref="SpendTokenUnlessBlocked"/>).
    /// On PostgreSQL one statement whose spend is conditional on the key not being blocked, held back in the writer, so that
    /// the decisions of a group's enrollments travel to the database together (<see cref="GroupCommitWriter"/>); the statement
    /// starts after the lock before it is granted, so it sees a block committed by whoever held the lock. SQLite (one writer,
    /// no round trips): the same spend, and the block's time read only when nothing was spent.</summary>
    public static async Task<Later<(DateTimeOffset? BlockedAt, bool Spent)>> SpendTokenUnlessBlockedAsync(CertPortalDbContext db, Guid id,
        string spkiSha256, string serial, DateTimeOffset now, CancellationToken ct)
    {
        if (db.Database.GetDbConnection() is not NpgsqlConnection)
        {
            // One statement on the hot path, as on PostgreSQL: the spend is conditional on the key not being blocked, and the
            // block's time is read only when nothing was spent (the writer's statements run inside its turn, one unit after another).
            var spend = Command(db, SpendTokenUnlessBlocked + "(SELECT 1 FROM \"BlockedKeys\" WHERE \"SpkiSha256\" = @spki)", out var sqlite);
            Add(spend, "now", Time(now, sqlite));
            Add(spend, "serial", serial);
            Add(spend, "id", Id(id, sqlite));
            Add(spend, "spki", spkiSha256);
            return await CountAsync(spend, ct) == 1 ? new((null, true)) : new((await BlockedAtAsync(db, spkiSha256, ct), false));
        }
        var command = Command(db, "WITH blocked AS (SELECT \"BlockedAt\" FROM \"BlockedKeys\" WHERE \"SpkiSha256\" = @spki), " +
            "spent AS (" + SpendTokenUnlessBlocked + "(SELECT FROM blocked) RETURNING 1) SELECT (SELECT \"BlockedAt\" FROM blocked), (SELECT count(*) FROM spent)", out _);
        Add(command, "spki", spkiSha256);
        Add(command, "now", Time(now, sqlite: false));
        Add(command, "serial", serial);
        Add(command, "id", id);
        return await ReadLaterAsync(command, async (reader, rct) =>
        {
            await reader.ReadAsync(rct);
            return (reader.IsDBNull(0) ? (DateTimeOffset?)null : reader.GetFieldValue<DateTimeOffset>(0), reader.GetInt64(1) == 1);
        }, ct);
    }

    /// <summary>PostgreSQL, held back in the group writer: the spend of <see cref="SpendTokenUnlessBlockedAsync"/> for a unit that writes
    /// expecting it to succeed (<see cref="GroupCommitWriter"/>): the statement fails (division by zero, 22012) when nothing was spent
    /// (the token spent, withdrawn or expired meanwhile, or the key blocked), which stops PostgreSQL before the unit's writes and the
    /// group's COMMIT; the writer then retries the group with each unit deciding from its answers. A division, not a function of our own:
    /// PostgreSQL has no statement that raises an error, and a constant's error would be raised at planning, whatever the data.</summary>
    public static Task SpendTokenOrFailAsync(CertPortalDbContext db, Guid id, string spkiSha256, string serial, DateTimeOffset now, CancellationToken ct)
    {
        var command = Command(db, "WITH spent AS (" + SpendTokenUnlessBlocked + "(SELECT FROM \"BlockedKeys\" WHERE \"SpkiSha256\" = @spki) RETURNING 1) " +
            "SELECT 1 / (SELECT count(*) FROM spent)", out _);
        Add(command, "now", Time(now, sqlite: false));
        Add(command, "serial", serial);
        Add(command, "id", id);
        Add(command, "spki", spkiSha256);
        return ExecuteAsync(command, ct, returnsRows: true);
    }

    /// <summary>In the group writer: the token with this hash spent for <paramref name="serial"/> unless the key is
    /// blocked (<see cref="SpendTokenUnlessBlocked"/>, by the hash, not an id read before), answered with the token as spent and the key
    /// generation the escrow policy stores (as <see cref="FindTokenByHashAsync(PostgresReadConnections, byte[], CancellationToken)"/>);
    /// no token when nothing was spent (unknown, spent, withdrawn or expired, or the key blocked): the caller then decides as before.
    /// An enrollment's token read and its spend in one statement: on PostgreSQL held back for its group's first round trip, on SQLite
    /// run at once on the writer's connection.</summary>
    public static Task<Later<(EnrollmentToken? Token, KeyGenerationPolicy? StoredKeyGeneration)>> ClaimTokenAsync(CertPortalDbContext db, byte[] hash,
        string spkiSha256, string serial, DateTimeOffset now, CancellationToken ct)
    {
        var command = Command(db, SpendTokenWhere + "\"TokenHash\" = @hash" + UsableUnlessBlocked +
            "(SELECT 1 FROM \"BlockedKeys\" WHERE \"SpkiSha256\" = @spki) RETURNING " + TokenColumns + ", " + PolicyColumns, out var sqlite);
        Add(command, "now", Time(now, sqlite));
        Add(command, "serial", serial);
        Add(command, "hash", hash);
        Add(command, "spki", spkiSha256);
        return ReadLaterAsync(command, (reader, rct) => ReadTokenAsync(reader, sqlite, rct), ct);
    }

    /// <summary>Gives back a token spent by <see cref="ClaimTokenAsync"/> in the same transaction, for an enrollment refused after its
    /// claim (the CSR names another mailbox, the policy wants a server-generated key, the certificate fails its lint).</summary>
    public static Task GiveBackTokenAsync(CertPortalDbContext db, Guid id, CancellationToken ct)
    {
        var command = Command(db, "UPDATE \"EnrollmentTokens\" SET \"UsedAt\" = NULL, \"CertificateSerial\" = NULL WHERE \"Id\" = @id", out var sqlite);
        Add(command, "id", Id(id, sqlite));
        return ExecuteAsync(command, ct);
    }

    /// <summary>When the key with this SPKI hash was blocked as compromised, or null.</summary>
    public static async Task<DateTimeOffset?> BlockedAtAsync(CertPortalDbContext db, string spkiSha256, CancellationToken ct)
    {
        var command = Command(db, "SELECT \"BlockedAt\" FROM \"BlockedKeys\" WHERE \"SpkiSha256\" = @spki", out var sqlite);
        Add(command, "spki", spkiSha256);
        return await ReadAsync(command, async (reader, rct) => await reader.ReadAsync(rct) ? Time(reader, 0, sqlite) : (DateTimeOffset?)null, ct);
    }

    public static Task InsertCertificateAsync(CertPortalDbContext db, IssuedCertificate c, CancellationToken ct)
    {
        var command = Command(db, "INSERT INTO \"Certificates\" (\"SerialNumber\", \"Email\", \"DisplayName\", \"Profile\", \"KeyAlgorithm\", " +
            "\"SubjectDn\", \"NotBefore\", \"NotAfter\", \"IssuedAt\", \"TokenId\", \"Der\", \"SpkiSha256\", \"RevokedAt\", " +
            "\"RevocationReason\", \"RenewalOf\", \"RenewedBy\", \"MailboxValidatedAt\") VALUES (@serial, @email, @name, @profile, @alg, @subject, " +
            "@nbf, @naf, @issued, @token, @der, @spki, @revoked, @reason, @renewalOf, @renewedBy, @validated)", out var sqlite);
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
        Add(command, "spki", c.SpkiSha256);
        Add(command, "revoked", Time(c.RevokedAt, sqlite));
        Add(command, "reason", c.RevocationReason?.ToString());
        Add(command, "renewalOf", c.RenewalOf);
        Add(command, "renewedBy", c.RenewedBy);
        Add(command, "validated", Time(c.MailboxValidatedAt, sqlite));
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
        "\"TokenId\", \"Der\", \"SpkiSha256\", \"RevokedAt\", \"RevocationReason\", \"RenewalOf\", \"RenewedBy\", \"MailboxValidatedAt\"";

    /// <summary>The certificate with this serial as committed (in the context's transaction, if it has one), or null.
    /// Revocation reads it once before queueing its change: the key to lock, the policy a hold depends on, the answer.</summary>
    public static async Task<IssuedCertificate?> FindCertificateAsync(CertPortalDbContext db, string serial, CancellationToken ct)
    {
        await db.Database.OpenConnectionAsync(ct);
        try
        {
            var command = Command(db, $"SELECT {CertificateColumns} FROM \"Certificates\" WHERE \"SerialNumber\" = @serial", out var sqlite);
            Add(command, "serial", serial);
            return await ReadAsync(command, async (reader, rct) => !await reader.ReadAsync(rct) ? null : ReadCertificate(reader, sqlite), ct);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    private static IssuedCertificate ReadCertificate(DbDataReader reader, bool sqlite) => new()
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
        SpkiSha256 = reader.IsDBNull(11) ? null : reader.GetString(11),
        RevokedAt = reader.IsDBNull(12) ? null : Time(reader, 12, sqlite),
        RevocationReason = reader.IsDBNull(13) ? null : Enum.Parse<RevocationReason>(reader.GetString(13)),
        RenewalOf = reader.IsDBNull(14) ? null : reader.GetString(14),
        RenewedBy = reader.IsDBNull(15) ? null : reader.GetString(15),
        MailboxValidatedAt = Time(reader, 16, sqlite),
    };

    /// <summary>PostgreSQL: locks a certificate's row until the transaction ends and reads it under that lock (SELECT … FOR UPDATE
    /// returns the row as the last commit left it), held back in the group writer so that the reads of a group's revocations travel
    /// together (<see cref="GroupCommitWriter.WriteAsync{TFirst, T}"/>). Null when there is no such certificate.</summary>
    public static Task<Later<IssuedCertificate?>> LockAndReadCertificateAsync(CertPortalDbContext db, string serial, CancellationToken ct)
    {
        var command = Command(db, $"SELECT {CertificateColumns} FROM \"Certificates\" WHERE \"SerialNumber\" = @serial FOR UPDATE", out var sqlite);
        Add(command, "serial", serial);
        return ReadLaterAsync(command, async (reader, rct) => await reader.ReadAsync(rct) ? ReadCertificate(reader, sqlite) : null, ct);
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

    /// <summary>What a keyCompromise of this key must change besides <paramref name="exceptSerial"/>, in one statement: the serials of
    /// the unexpired certificates for the key not yet revoked for keyCompromise (valid, on hold, or revoked for another reason), which
    /// it must revoke or give its reason too; and the renewals of any certificate for the key (<see cref="KeyCertificates.Renewals"/>),
    /// where the walk down each renewal chain starts (<see cref="Revocation.CompromisedRenewals"/>).</summary>
    public static async Task<KeyCertificates> KeyCertificatesAsync(CertPortalDbContext db, string spkiSha256, string? exceptSerial,
        DateTimeOffset now, CancellationToken ct)
    {
        var (command, read) = ReadKeyCertificates(db, "@spki", spkiSha256, exceptSerial, now);
        return await ReadAsync(command, read, ct);
    }

    /// <summary>PostgreSQL, held back in the group writer: <see cref="KeyCertificatesAsync"/> for the key of the certificate
    /// <paramref name="serial"/> (except that one), found by the database from its row, so the caller needs no read first.</summary>
    public static Task<Later<KeyCertificates>> KeyCertificatesOfLaterAsync(CertPortalDbContext db, string serial, DateTimeOffset now,
        CancellationToken ct)
    {
        var (command, read) = ReadKeyCertificates(db, KeyOf, serial, serial, now);
        return ReadLaterAsync(command, read, ct);
    }

    /// <summary>The SpkiSha256 of the certificate @serial, in SQL.</summary>
    private const string KeyOf = "(SELECT \"SpkiSha256\" FROM \"Certificates\" WHERE \"SerialNumber\" = @serial)";

    /// <param name="key">@spki, or <see cref="KeyOf"/> (then <paramref name="spkiSha256"/> is the serial).</param>
    private static (DbCommand, Func<DbDataReader, CancellationToken, Task<KeyCertificates>>) ReadKeyCertificates(CertPortalDbContext db,
        string key, string spkiSha256, string? exceptSerial, DateTimeOffset now)
    {
        // One index scan of the key's certificates serves both lists: a keyCompromise is the benchmark's revocation, and a second
        // statement for the renewals (a recursive walk down the chains) cost PostgreSQL a third more per revocation. Only the first
        // step of each chain is read here; CompromisedRenewals follows the rest under each row's lock.
        const string revocable = "(\"SerialNumber\" <> @except AND \"NotAfter\" > @now AND (\"RevokedAt\" IS NULL OR \"RevocationReason\" <> @compromise))";
        var command = Command(db, $"SELECT \"SerialNumber\", \"RenewedBy\", CASE WHEN {revocable} THEN 1 ELSE 0 END FROM \"Certificates\" " +
            $"WHERE \"SpkiSha256\" = {key} AND ({revocable} OR \"RenewedBy\" IS NOT NULL)", out var sqlite);
        Add(command, key == KeyOf ? "serial" : "spki", spkiSha256);
        // Serials are never empty: "" excludes nothing (and keeps the parameter typed on PostgreSQL).
        Add(command, "except", exceptSerial ?? "");
        Add(command, "now", Time(now, sqlite));
        Add(command, "compromise", nameof(RevocationReason.KeyCompromise));
        return (command, async (reader, rct) =>
        {
            var found = new KeyCertificates([], []);
            while (await reader.ReadAsync(rct))
            {
                var serial = reader.GetString(0);
                if (Convert.ToInt32(reader.GetValue(2), System.Globalization.CultureInfo.InvariantCulture) == 1) found.NotCompromised.Add(serial);
                if (!reader.IsDBNull(1)) found.Renewals.Add((reader.GetString(1), serial));
            }
            return found;
        });
    }

    public static async Task<BlockedKey?> FindBlockedKeyAsync(CertPortalDbContext db, string spkiSha256, CancellationToken ct)
    {
        var (command, read) = FindBlockedKey(db, "@spki", spkiSha256);
        return await ReadAsync(command, read, ct);
    }

    /// <summary>PostgreSQL, held back in the group writer: the block of the key of the certificate <paramref name="serial"/>, if any.</summary>
    public static Task<Later<BlockedKey?>> FindBlockedKeyOfLaterAsync(CertPortalDbContext db, string serial, CancellationToken ct)
    {
        var (command, read) = FindBlockedKey(db, KeyOf, serial);
        return ReadLaterAsync(command, read, ct);
    }

    /// <param name="key">@spki, or <see cref="KeyOf"/> (then <paramref name="value"/> is the serial).</param>
    private static (DbCommand, Func<DbDataReader, CancellationToken, Task<BlockedKey?>>) FindBlockedKey(CertPortalDbContext db, string key, string value)
    {
        var command = Command(db, "SELECT \"KeyAlgorithm\", \"BlockedAt\", \"BlockedBy\", \"Source\", \"Comment\", \"SpkiSha256\" FROM \"BlockedKeys\" " +
            $"WHERE \"SpkiSha256\" = {key}", out var sqlite);
        Add(command, key == KeyOf ? "serial" : "spki", value);
        return (command, async (reader, rct) => !await reader.ReadAsync(rct) ? null : new BlockedKey
        {
            SpkiSha256 = reader.GetString(5),
            KeyAlgorithm = reader.GetString(0),
            BlockedAt = Time(reader, 1, sqlite),
            BlockedBy = reader.GetString(2),
            Source = reader.GetString(3),
            Comment = reader.IsDBNull(4) ? null : reader.GetString(4),
        });
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

    /// <summary>A directory outbox row (see <see cref="DirectoryPublication"/>), unclaimed and not yet attempted.</summary>
    public static Task InsertDirectoryPublicationAsync(CertPortalDbContext db, DirectoryPublication p, CancellationToken ct)
    {
        var command = Command(db, "INSERT INTO \"DirectoryPublications\" (\"Kind\", \"Key\", \"Reason\", \"SerialNumber\", \"CreatedAt\", " +
            "\"NextAttemptAt\", \"Attempts\") VALUES (@kind, @key, @reason, @serial, @created, @next, 0)", out var sqlite);
        Add(command, "kind", p.Kind);
        Add(command, "key", p.Key);
        Add(command, "reason", p.Reason);
        Add(command, "serial", p.SerialNumber);
        Add(command, "created", Time(p.CreatedAt, sqlite));
        Add(command, "next", Time(p.NextAttemptAt, sqlite));
        return ExecuteAsync(command, ct);
    }

    /// <summary>A CRL is owed for <paramref name="authority"/>, for the certificate <paramref name="serialNumber"/> or (null) for
    /// changes not named (see <see cref="CrlChange"/>).</summary>
    public static Task InsertCrlChangeAsync(CertPortalDbContext db, string authority, DateTimeOffset at, CancellationToken ct, string? serialNumber = null)
    {
        var command = Command(db, "INSERT INTO \"CrlChanges\" (\"Authority\", \"At\", \"SerialNumber\") VALUES (@authority, @at, @serial)", out var sqlite);
        Add(command, "authority", authority);
        Add(command, "at", Time(at, sqlite));
        Add(command, "serial", serialNumber);
        return ExecuteAsync(command, ct);
    }

    /// <summary>Inserts the look-up cache's change row and sets its id (RETURNING: SQLite 3.35+ and PostgreSQL), which the cache
    /// needs to recognise its own change when its poll reads it, after the commit. In the writer on PostgreSQL the insert is
    /// held back like the others and the id set when its batch runs, before the commit.</summary>
    public static async Task InsertCertificateChangeAsync(CertPortalDbContext db, CertificateChange c, CancellationToken ct)
    {
        var command = Command(db, "INSERT INTO \"CertificateChanges\" (\"Email\", \"At\") VALUES (@email, @at) RETURNING \"Id\"", out var sqlite);
        Add(command, "email", c.Email);
        Add(command, "at", Time(c.At, sqlite));
        await ReadLaterAsync(command, async (reader, rct) =>
        {
            await reader.ReadAsync(rct);
            return c.Id = reader.GetInt64(0);
        }, ct);
    }

    /// <summary>A command on the context's connection and transaction. Run it only through <see cref="ExecuteAsync"/>,
    /// <see cref="CountAsync"/> or <see cref="ReadAsync"/>: in the writer on PostgreSQL they send the held-back commands
    /// first, where the command's own Execute* would overtake them (a read before the lock it depends on).</summary>
    private static DbCommand Command(CertPortalDbContext db, string sql, out bool sqlite)
    {
        var connection = db.Database.GetDbConnection();
        sqlite = connection is SqliteConnection;
        var command = connection is SqliteConnection lite ? Kept(lite, sql) : connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = db.Database.CurrentTransaction?.GetDbTransaction();
        return command;
    }

    /// <summary>SQLite: the command for <paramref name="sql"/> kept on this connection while it stays open, so its statement
    /// is compiled once, not at every use (Microsoft.Data.Sqlite compiles the SQL of every new command again, and a
    /// revocation runs nine). The group writer keeps its connection open from group to group.</summary>
    private static SqliteCommand Kept(SqliteConnection connection, string sql)
    {
        var kept = KeptCommands.GetValue(connection, KeepFor);
        if (!kept.TryGetValue(sql, out var command)) kept.Add(sql, command = new KeptCommand(connection));
        command.Parameters.Clear();
        return command;
    }

    private static readonly ConditionalWeakTable<SqliteConnection, Dictionary<string, KeptCommand>> KeptCommands = [];

    private static Dictionary<string, KeptCommand> KeepFor(SqliteConnection connection)
    {
        var kept = new Dictionary<string, KeptCommand>(StringComparer.Ordinal);
        // Close() disposes every command of the connection (their statements belong to the native connection, which goes
        // back to the pool): the next open starts with new ones.
        connection.StateChange += (_, e) =>
        {
            if (e.CurrentState == System.Data.ConnectionState.Closed) kept.Clear();
        };
        return kept;
    }

    /// <summary>A command that survives the <c>await using</c> of each use: DisposeAsync keeps its compiled statement, while
    /// Dispose (what the connection's Close calls) frees it as usual.</summary>
    private sealed class KeptCommand : SqliteCommand
    {
        public KeptCommand(SqliteConnection connection)
        {
            Connection = connection;
            CommandTimeout = connection.DefaultTimeout;
        }

#pragma warning disable CA2215 // not disposing is the point: Dispose, which the connection's Close calls, still frees the statement
        public override ValueTask DisposeAsync() => ValueTask.CompletedTask;
#pragma warning restore CA2215
    }

    /// <summary>A transaction-scoped PostgreSQL advisory lock (see <see cref="DatabaseLocks.LockNamedAsync"/>), as a plain
    /// command: held back with the writer's other unanswered commands, and without EF Core's SQL generation.</summary>
    internal static Task LockNamedAsync(CertPortalDbContext db, string key, CancellationToken ct) =>
        LockAsync(db, "SELECT pg_advisory_xact_lock(hashtext(@value))", key, ct);

    /// <summary>The transaction-scoped lock named <paramref name="prefix"/> + the SpkiSha256 of the certificate <paramref name="serial"/>
    /// (see <see cref="DatabaseLocks.LockCertificateKeyAsync"/>), the name made by the database from the row; held back like the others.
    /// Nothing is locked for a certificate without SpkiSha256.</summary>
    internal static async Task LockNamedOfCertificateAsync(CertPortalDbContext db, string prefix, string serial, CancellationToken ct)
    {
        await db.Database.OpenConnectionAsync(ct);
        try
        {
            var command = Command(db, "SELECT pg_advisory_xact_lock(hashtext(@prefix || \"SpkiSha256\")) FROM \"Certificates\" " +
                "WHERE \"SerialNumber\" = @serial AND \"SpkiSha256\" IS NOT NULL", out _);
            Add(command, "prefix", prefix);
            Add(command, "serial", serial);
            await ExecuteAsync(command, ct, returnsRows: true);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>Locks a certificate row until the transaction ends (see <see cref="DatabaseLocks.LockCertificateAsync"/>).</summary>
    internal static Task LockCertificateAsync(CertPortalDbContext db, string serialNumber, CancellationToken ct) =>
        LockAsync(db, "SELECT 1 FROM \"Certificates\" WHERE \"SerialNumber\" = @value FOR UPDATE", serialNumber, ct);

    private static async Task LockAsync(CertPortalDbContext db, string sql, string value, CancellationToken ct)
    {
        await db.Database.OpenConnectionAsync(ct);
        try
        {
            var command = Command(db, sql, out _);
            Add(command, "value", value);
            await ExecuteAsync(command, ct, returnsRows: true);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>The writer's transaction on PostgreSQL: from now on, commands whose answer is not read are held back and
    /// sent with the next command that needs one (see the class summary). No-op on SQLite, where a command is a function
    /// call. Commit before <see cref="EndDeferring"/>: what is still held back then goes in the commit's round trip (the interceptor
    /// sends it with COMMIT). True when commands are held back from now on.</summary>
    public static bool BeginDeferring(CertPortalDbContext db)
    {
        if (db.Database.GetDbConnection() is not NpgsqlConnection connection ||
            db.Database.CurrentTransaction?.GetDbTransaction() is not NpgsqlTransaction tx) return false;
        // Without the interceptor EF Core's commands would overtake the held-back ones (a read before its lock).
        var interceptors = db.GetService<IDbContextOptions>().FindExtension<CoreOptionsExtension>()?.Interceptors;
        if (interceptors is null || !interceptors.Contains(FlushBeforeEfCommands)) return false;
        Deferrals.AddOrUpdate(connection, new Deferred(tx));
        return true;
    }

    /// <summary>Stops holding commands back on this context's connection; what is still held is dropped (the transaction
    /// was rolled back, or everything went with the commit).</summary>
    public static void EndDeferring(CertPortalDbContext db) => Deferrals.Remove(db.Database.GetDbConnection());

    /// <summary>Sends the commands held back on this connection, if any, in one round trip.</summary>
    public static async Task FlushAsync(DbConnection connection, CancellationToken ct)
    {
        if (Take(connection, null, out var rowSets) is not { } batch) return;
        await using (batch)
        {
            if (rowSets.All(r => r is null))
            {
                await batch.ExecuteNonQueryAsync(ct);
                return;
            }
            await using var reader = await batch.ExecuteReaderAsync(ct);
            await ReadRowSetsAsync(reader, rowSets, ct);
        }
    }

    public static Task FlushAsync(CertPortalDbContext db, CancellationToken ct) => FlushAsync(db.Database.GetDbConnection(), ct);

    private static void Flush(DbConnection connection)
    {
        if (Take(connection, null, out var rowSets) is not { } batch) return;
        using (batch)
        {
            if (rowSets.All(r => r is null))
            {
                batch.ExecuteNonQuery();
                return;
            }
            // EF Core's synchronous calls inside the writer (none on the hot paths) wait for the held-back reads here.
            using var reader = batch.ExecuteReader();
            ReadRowSetsAsync(reader, rowSets, CancellationToken.None).GetAwaiter().GetResult();
        }
    }

    /// <summary>Flushes held-back commands before EF Core sends one of its own on that connection, so EF Core's reads and
    /// writes (change-log rows, revocations, the saves of a group) come after them, as they were issued.</summary>
    public static readonly IInterceptor FlushBeforeEfCommands = new FlushInterceptor();

    private sealed class Deferred(NpgsqlTransaction transaction)
    {
        public NpgsqlTransaction Transaction { get; } = transaction;
        public List<NpgsqlBatchCommand> Commands { get; } = [];
        /// <summary>One entry per held-back statement that returns rows, in order: what reads its result set when the batch
        /// runs (a held-back read, see <see cref="Later{T}"/>), or null for a lock's (a SELECT whose row nobody needs).</summary>
        public List<Func<DbDataReader, CancellationToken, Task>?> RowSets { get; } = [];
        /// <summary>Committed already, by <see cref="CommitHeldBackAsync"/>.</summary>
        public bool Committed { get; set; }
    }

    private static readonly ConditionalWeakTable<DbConnection, Deferred> Deferrals = [];

    /// <summary>The held-back commands (and <paramref name="last"/>) as one batch, or null when there is nothing to send;
    /// <paramref name="rowSets"/> reads the held-back statements' result sets, which come before <paramref name="last"/>'s.</summary>
    private static NpgsqlBatch? Take(DbConnection connection, DbCommand? last, out Func<DbDataReader, CancellationToken, Task>?[] rowSets)
    {
        rowSets = [];
        // Nothing held back: the command goes alone, as a plain command.
        if (!Deferrals.TryGetValue(connection, out var held) || held.Commands.Count == 0) return null;
        if (last is not null && last.Transaction != held.Transaction) return null;
        var batch = new NpgsqlBatch((NpgsqlConnection)connection, held.Transaction);
        foreach (var c in held.Commands) batch.BatchCommands.Add(c);
        if (last is not null) batch.BatchCommands.Add(ToBatchCommand(last));
        rowSets = [.. held.RowSets];
        held.Commands.Clear();
        held.RowSets.Clear();
        return batch;
    }

    /// <summary>Hands each held-back statement's result set to its reader, in order; the reader ends after the last of them.</summary>
    private static async Task ReadRowSetsAsync(DbDataReader reader, Func<DbDataReader, CancellationToken, Task>?[] rowSets, CancellationToken ct)
    {
        foreach (var read in rowSets)
        {
            if (read is not null) await read(reader, ct);
            await reader.NextResultAsync(ct);
        }
    }

    private static NpgsqlBatchCommand ToBatchCommand(DbCommand command)
    {
        var batched = new NpgsqlBatchCommand(command.CommandText);
        // A parameter belongs to one collection: take them off the command first.
        var parameters = command.Parameters.Cast<NpgsqlParameter>().ToList();
        command.Parameters.Clear();
        batched.Parameters.AddRange(parameters.ToArray());
        return batched;
    }

    /// <summary>Runs a command whose answer is not read: held back inside the writer's transaction on PostgreSQL,
    /// else executed now.</summary>
    private static async Task ExecuteAsync(DbCommand command, CancellationToken ct, bool returnsRows = false)
    {
        Positional(command);
        await using (command)
        {
            if (command.Connection is { } connection && Deferrals.TryGetValue(connection, out var held) && command.Transaction == held.Transaction)
            {
                held.Commands.Add(ToBatchCommand(command));
                if (returnsRows) held.RowSets.Add(null);
                return;
            }
            await command.ExecuteNonQueryAsync(ct);
        }
    }

    /// <summary>Rows affected by <paramref name="command"/>, sent with whatever was held back before it.</summary>
    private static async Task<int> CountAsync(DbCommand command, CancellationToken ct)
    {
        Positional(command);
        await using (command)
        {
            if (Take(command.Connection!, command, out var rowSets) is { } batch)
            {
                await using (batch)
                {
                    if (rowSets.All(r => r is null)) await batch.ExecuteNonQueryAsync(ct);
                    else
                    {
                        await using var reader = await batch.ExecuteReaderAsync(ct);
                        await ReadRowSetsAsync(reader, rowSets, ct);
                    }
                    return batch.BatchCommands[^1].RecordsAffected;
                }
            }
            return await command.ExecuteNonQueryAsync(ct);
        }
    }

    /// <summary>A read whose answer is needed only later: inside the writer's transaction on PostgreSQL it is held back like an
    /// insert and answered when its batch runs (with the next command that needs an answer, or at <see cref="FlushAsync(CertPortalDbContext, CancellationToken)"/>);
    /// else read now.</summary>
    private static async Task<Later<T>> ReadLaterAsync<T>(DbCommand command, Func<DbDataReader, CancellationToken, Task<T>> read, CancellationToken ct)
    {
        Positional(command);
        if (command.Connection is { } connection && Deferrals.TryGetValue(connection, out var held) && command.Transaction == held.Transaction)
        {
            var later = new Later<T>();
            await using (command) held.Commands.Add(ToBatchCommand(command));
            held.RowSets.Add(async (reader, rct) => later.Set(await read(reader, rct)));
            return later;
        }
        return new(await ReadAsync(command, read, ct));
    }

    /// <summary>Reads <paramref name="command"/>'s rows with <paramref name="read"/>, sent with whatever was held back before it.</summary>
    private static async Task<T> ReadAsync<T>(DbCommand command, Func<DbDataReader, CancellationToken, Task<T>> read, CancellationToken ct)
    {
        Positional(command);
        await using (command)
        {
            if (Take(command.Connection!, command, out var rowSets) is { } batch)
            {
                await using (batch)
                {
                    await using var batched = await batch.ExecuteReaderAsync(ct);
                    // Statements without rows (inserts) have no result set; held-back locks and reads have one each.
                    await ReadRowSetsAsync(batched, rowSets, ct);
                    return await read(batched, ct);
                }
            }
            await using var reader = await command.ExecuteReaderAsync(ct);
            return await read(reader, ct);
        }
    }

    /// <summary>Commits the writer's transaction with the commands still held back on its connection in one batch ending in
    /// COMMIT: one round trip where a flush and then the commit took two. False when nothing is held back (or this is not
    /// the writer's transaction): the commit then goes as usual. A failing statement of the batch stops PostgreSQL before the
    /// COMMIT, so the transaction is left failed and rolled back, as when the flush failed before. COMMIT answers after the
    /// commit record is flushed (synchronous_commit on), as NpgsqlTransaction.Commit does.</summary>
    private static async Task<bool> CommitWithHeldBackAsync(DbTransaction transaction, bool async, CancellationToken ct)
    {
        if (transaction.Connection is not { } connection || !Deferrals.TryGetValue(connection, out var held) || held.Transaction != transaction)
            return false;
        if (Take(connection, null, out var rowSets) is not { } batch) return false;
        await using (batch)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand("COMMIT"));
            if (!async)
            {
                using var syncReader = batch.ExecuteReader();
                ReadRowSetsAsync(syncReader, rowSets, CancellationToken.None).GetAwaiter().GetResult();
                return true;
            }
            await using var reader = await batch.ExecuteReaderAsync(ct);
            await ReadRowSetsAsync(reader, rowSets, ct);
        }
        return true;
    }

    /// <summary>Commits the context's transaction now with the commands held back (see <see cref="CommitWithHeldBackAsync"/>), outside
    /// EF Core's commit, for a group whose failure is an expected outcome (a spend refused in a group written expecting success,
    /// <see cref="GroupCommitWriter.WriteExpectingSuccessAsync{TFirst, T}"/>): EF Core logs a failing commit as an error, while this
    /// failure reaches the group writer alone, which retries the group. The transaction's commit that follows is suppressed, and EF
    /// Core still raises its committed events (the look-up cache drops the mailboxes the group changed).</summary>
    public static async Task CommitHeldBackAsync(CertPortalDbContext db, CancellationToken ct)
    {
        if (db.Database.CurrentTransaction?.GetDbTransaction() is not { } transaction ||
            !Deferrals.TryGetValue(db.Database.GetDbConnection(), out var held) || held.Transaction != transaction) return;
        // Held per transaction (Npgsql reuses its transaction objects): EndDeferring drops it.
        held.Committed = await CommitWithHeldBackAsync(transaction, async: true, ct);
    }

    /// <summary>Whether <paramref name="transaction"/> was committed by <see cref="CommitHeldBackAsync"/>.</summary>
    private static bool CommittedHere(DbTransaction transaction, TransactionEventData eventData) =>
        eventData.Context?.Database.GetDbConnection() is { } connection && Deferrals.TryGetValue(connection, out var held) &&
        held.Transaction == transaction && held.Committed;

    private sealed class FlushInterceptor : DbCommandInterceptor, IDbTransactionInterceptor
    {
        // The writer's commit: Npgsql's own COMMIT is suppressed when it was sent with the held-back commands. EF Core still
        // raises TransactionCommitted (the look-up cache drops the mailboxes the group changed) and ends its transaction.
        public InterceptionResult TransactionCommitting(DbTransaction transaction, TransactionEventData eventData, InterceptionResult result) =>
            CommittedHere(transaction, eventData) || CommitWithHeldBackAsync(transaction, async: false, CancellationToken.None).GetAwaiter().GetResult()
                ? InterceptionResult.Suppress() : result;

        public async ValueTask<InterceptionResult> TransactionCommittingAsync(DbTransaction transaction, TransactionEventData eventData,
            InterceptionResult result, CancellationToken cancellationToken = default) =>
            CommittedHere(transaction, eventData) || await CommitWithHeldBackAsync(transaction, async: true, cancellationToken)
                ? InterceptionResult.Suppress() : result;

        public override InterceptionResult<DbDataReader> ReaderExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<DbDataReader> result)
        {
            Flush(command.Connection!);
            return result;
        }

        public override InterceptionResult<int> NonQueryExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<int> result)
        {
            Flush(command.Connection!);
            return result;
        }

        public override InterceptionResult<object> ScalarExecuting(DbCommand command, CommandEventData eventData, InterceptionResult<object> result)
        {
            Flush(command.Connection!);
            return result;
        }

        public override async ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData,
            InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default)
        {
            await FlushAsync(command.Connection!, cancellationToken);
            return result;
        }

        public override async ValueTask<InterceptionResult<int>> NonQueryExecutingAsync(DbCommand command, CommandEventData eventData,
            InterceptionResult<int> result, CancellationToken cancellationToken = default)
        {
            await FlushAsync(command.Connection!, cancellationToken);
            return result;
        }

        public override async ValueTask<InterceptionResult<object>> ScalarExecutingAsync(DbCommand command, CommandEventData eventData,
            InterceptionResult<object> result, CancellationToken cancellationToken = default)
        {
            await FlushAsync(command.Connection!, cancellationToken);
            return result;
        }
    }

    /// <summary>PostgreSQL: turns the command's @names into positional parameters ($1, $2, … in the order of first use, the values
    /// reordered to match). Npgsql sends a statement with positional parameters as written, but parses the text of one with named
    /// parameters at every execution to rewrite them (2.5 % of the service's CPU samples in a profile of EC-P256 enrollments on
    /// PostgreSQL, the writer's statements and the token read), and finds each parameter by name. The SQL here names parameters
    /// only with @ (no string literal or identifier holds one); each text is translated once.</summary>
    private static void Positional(DbCommand command)
    {
        if (command is not NpgsqlCommand npgsql || npgsql.Parameters.Count == 0 || npgsql.Parameters[0].ParameterName.Length == 0) return;
        var (sql, names) = PositionalTexts.GetOrAdd(command.CommandText, ToPositional);
        var named = npgsql.Parameters.ToArray();
        npgsql.Parameters.Clear();
        foreach (var name in names)
        {
            var value = Array.Find(named, p => p.ParameterName == name) ??
                throw new InvalidOperationException($"No value for @{name} in: {command.CommandText}");
            value.ParameterName = "";
            npgsql.Parameters.Add(value);
        }
        command.CommandText = sql;
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, (string Sql, string[] Names)> PositionalTexts =
        new(StringComparer.Ordinal);

    private static (string, string[]) ToPositional(string sql)
    {
        var names = new List<string>();
        var text = ParameterName().Replace(sql, m =>
        {
            var at = names.IndexOf(m.Groups[1].Value);
            if (at < 0) names.Add(m.Groups[1].Value);
            return "$" + (at < 0 ? names.Count : at + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
        });
        return (text, [.. names]);
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"@([A-Za-z_][A-Za-z0-9_]*)")]
    private static partial System.Text.RegularExpressions.Regex ParameterName();

    private static void Add(DbCommand command, string name, object? value)
    {
        var p = command.CreateParameter();
        // SQLite binds by the name as written in the SQL: a bare name costs three failed look-ups (with a UTF-8 copy
        // each) before "@name" is found, at every execution.
        p.ParameterName = command is SqliteCommand ? "@" + name : name;
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


/// <summary>A key's certificates as a keyCompromise needs them (<see cref="DirectSql.KeyCertificatesAsync"/>): the serials it must
/// revoke, or give its reason, too; and each renewal of a certificate for the key, with that certificate (<c>Cause</c>).</summary>
public sealed record KeyCertificates(List<string> NotCompromised, List<(string Serial, string Cause)> Renewals);
/// <summary>The answer of a read that may have been held back (<see cref="DirectSql"/>): known once the batch it travels in has run,
/// which in the group writer is before a two-step unit's second step (<see cref="GroupCommitWriter.WriteAsync{TFirst, T}"/>).</summary>
public sealed class Later<T>
{
    private T _value = default!;
    private bool _known;

    internal Later() { }

    internal Later(T value) => Set(value);

    internal void Set(T value)
    {
        _value = value;
        _known = true;
    }

    public T Value => _known ? _value : throw new InvalidOperationException("The read was held back and its batch has not run yet.");
}
