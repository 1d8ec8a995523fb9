using System.Data.Common;
using System.Runtime.CompilerServices;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using SQLitePCL;

namespace CertPortal.Data;

/// <summary>The rows a CRL lists: every revoked (or held) certificate that had not expired at the horizon the signer gives
/// (<see cref="Revocation.CrlSigner.ListingHorizon"/>: RFC 5280 §3.3 keeps an entry until one CRL issued after the certificate
/// expired has listed it), in serial order, with
/// what its entry needs, streamed over the partial index IX_Certificates_Revoked (serial, then the CRL's columns, so
/// neither a sort nor a table read). A million rows pass through without an object each. How they are read differs
/// by database, and that is kept here: PostgreSQL through a data reader on the caller's transaction; SQLite through its
/// own statement API, split into serial ranges read at once on separate connections.</summary>
public static class RevokedCertificates
{
    /// <summary>One revoked certificate as read: serial (INTEGER content bytes), revocation time, reason (null: none).
    /// The span is valid during the call only.</summary>
    public delegate void Row(ReadOnlySpan<byte> serialNumber, DateTimeOffset revokedAt, X509RevocationReason? reason);

    /// <summary>Reads every row in serial order on the caller's connection and transaction.</summary>
    public static Task ReadAsync(CertPortalDbContext db, DateTimeOffset horizon, Row each, CancellationToken ct) =>
        db.Database.GetDbConnection() is SqliteConnection
            ? ReadSqliteAsync(db, horizon, null, null, each, ct)
            : ReadWithReaderAsync(db, horizon, each, ct);

    /// <summary>How many consecutive serial ranges <see cref="ReadPartsAsync"/> reads at once: one per core (at most
    /// 8) on SQLite, where reading is this process's CPU work; one elsewhere (PostgreSQL reads on its own cores and
    /// streams the rows in order). For a small CRL the extra pooled connections cost well under a millisecond.</summary>
    public static int Parts(CertPortalDbContext db) =>
        db.Database.GetDbConnection() is SqliteConnection sqlite && SqliteDatabaseFile.Of(sqlite.ConnectionString) is not null ? Math.Clamp(Environment.ProcessorCount, 1, 8) : 1;

    /// <summary>Reads the rows as <paramref name="parts"/> consecutive serial ranges at once, each in serial order, the
    /// rows of part i all before those of part i + 1; <paramref name="each"/> gets the part's number and is called
    /// concurrently for different parts. Parts after the first are read on connections of their own, which see what is
    /// committed: on SQLite that is exactly what the caller's transaction sees as long as it has written nothing yet,
    /// since its write lock (BEGIN IMMEDIATE) keeps every other writer out. So call this before writing in the
    /// transaction, as the CRL signer does.</summary>
    public static async Task ReadPartsAsync(CertPortalDbContext db, DateTimeOffset horizon, int parts, Func<int, Row> each, CancellationToken ct)
    {
        if (parts <= 1)
        {
            await ReadAsync(db, horizon, each(0), ct);
            return;
        }
        var connectionString = db.Database.GetConnectionString();
        await db.Database.OpenConnectionAsync(ct);
        try
        {
            var bounds = Bounds(SerialRange((SqliteConnection)db.Database.GetDbConnection()), parts);
            var readers = new Task[parts];
            readers[0] = Task.Run(() => ReadSqlite((SqliteConnection)db.Database.GetDbConnection(), horizon, bounds[0], bounds[1], each(0), ct), ct);
            for (var i = 1; i < parts; i++)
            {
                var part = i;
                readers[i] = Task.Run(async () =>
                {
                    await using var connection = new SqliteConnection(connectionString);
                    await connection.OpenAsync(ct);
                    ReadSqlite(connection, horizon, bounds[part], bounds[part + 1], each(part), ct);
                }, ct);
            }
            await Task.WhenAll(readers);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>The first and the last revoked serial (upper-case hexadecimal as stored), each read from one end of
    /// IX_Certificates_Revoked; null when none is revoked.</summary>
    private static (string? First, string? Last) SerialRange(SqliteConnection connection)
    {
        // Through SQLite's statement API, as the rows are read: the connection may be in the caller's transaction. Two
        // subqueries: SQLite answers a lone min() or max() from an index's end, not both in one aggregate.
        var handle = connection.Handle ?? throw new InvalidOperationException("The SQLite connection is not open.");
        SqliteException.ThrowExceptionForRC(raw.sqlite3_prepare_v2(handle,
            "SELECT (SELECT min(\"SerialNumber\") FROM \"Certificates\" WHERE \"RevokedAt\" IS NOT NULL), " +
            "(SELECT max(\"SerialNumber\") FROM \"Certificates\" WHERE \"RevokedAt\" IS NOT NULL)", out var statement), handle);
        using (statement)
        {
            var rc = raw.sqlite3_step(statement);
            if (rc != raw.SQLITE_ROW) SqliteException.ThrowExceptionForRC(rc, handle);
            static string? Text(sqlite3_stmt s, int column) => raw.sqlite3_column_type(s, column) == raw.SQLITE_NULL ? null : raw.sqlite3_column_text(s, column).utf8_to_string();
            return (Text(statement, 0), Text(statement, 1));
        }
    }

    /// <summary>The bounds of <paramref name="parts"/> consecutive serial ranges (the first and the last open) that split the
    /// range the revoked serials span evenly by their first 8 bytes. Serials begin with their time of issue (SerialNumber.New),
    /// so where the revoked ones lie follows when their certificates were issued (older, random serials spread over 01-7F).
    /// Without two different first 8 bytes to split between, the first byte's range 01-7F is split. The bounds never
    /// decrease, so every serial lands in exactly one range whatever they are: only the parts' balance depends on them.</summary>
    internal static string?[] Bounds((string? First, string? Last) range, int parts)
    {
        var (first, last) = range.First is not null && range.Last is not null && TryPrefix(range.First, out var from) &&
            TryPrefix(range.Last, out var to) && to > from ? (from, to) : (0x01UL << 56, 0x80UL << 56);
        var bounds = new string?[parts + 1];
        for (var i = 1; i < parts; i++)
            bounds[i] = (first + (ulong)((UInt128)(last - first) * (ulong)i / (ulong)parts)).ToString("X16", System.Globalization.CultureInfo.InvariantCulture);
        return bounds;
    }

    /// <summary>The first 8 bytes of a hexadecimal serial as a number (a shorter serial padded with zeros, as it sorts).</summary>
    private static bool TryPrefix(string hex, out ulong prefix) =>
        ulong.TryParse(hex.Length >= 16 ? hex[..16] : hex.PadRight(16, '0'), System.Globalization.NumberStyles.AllowHexSpecifier,
            System.Globalization.CultureInfo.InvariantCulture, out prefix);

    /// <summary>For the data reader (PostgreSQL): the reason as the CRL's reasonCode number, mapped in SQL so no string
    /// is read per row; S/MIME BR 7.2.2: "unspecified" is omitted (NULL).</summary>
    private static readonly string Columns =
        "SELECT \"SerialNumber\", \"RevokedAt\", CASE \"RevocationReason\" " +
        string.Concat(Enum.GetValues<RevocationReason>().Where(r => r != RevocationReason.Unspecified)
            .Select(r => $"WHEN '{r}' THEN {(int)r} ")) +
        "ELSE NULL END FROM \"Certificates\" WHERE \"RevokedAt\" IS NOT NULL AND \"NotAfter\" >= @horizon";

    private static async Task ReadSqliteAsync(CertPortalDbContext db, DateTimeOffset horizon, string? from, string? to, Row each, CancellationToken ct)
    {
        await db.Database.OpenConnectionAsync(ct);
        try
        {
            ReadSqlite((SqliteConnection)db.Database.GetDbConnection(), horizon, from, to, each, ct);
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    /// <summary>SQLite's statement API directly: Microsoft.Data.Sqlite's reader makes a string of every serial and
    /// checks every call, which was most of the CPU of a million-entry CRL. Here the serial's text is read in place
    /// from SQLite's row buffer. Times are UTC ticks, as the model stores them (SqliteCertPortalDbContext).</summary>
    // Optimised at once: this loop runs a million times in one call, and the first CRLs after a start would otherwise
    // run it (and the calls in it) as unoptimised tier-0 code, several times slower.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ReadSqlite(SqliteConnection connection, DateTimeOffset horizon, string? from, string? to, Row each, CancellationToken ct)
    {
        var handle = connection.Handle ?? throw new InvalidOperationException("The SQLite connection is not open.");
        var sql = SqliteColumns + (from is null ? "" : " AND \"SerialNumber\" >= @from") + (to is null ? "" : " AND \"SerialNumber\" < @to") +
            " ORDER BY \"SerialNumber\"";
        SqliteException.ThrowExceptionForRC(raw.sqlite3_prepare_v2(handle, sql, out var statement), handle);
        using (statement)
        {
            raw.sqlite3_bind_int64(statement, raw.sqlite3_bind_parameter_index(statement, "@horizon"), horizon.UtcTicks);
            if (from is not null) raw.sqlite3_bind_text(statement, raw.sqlite3_bind_parameter_index(statement, "@from"), from);
            if (to is not null) raw.sqlite3_bind_text(statement, raw.sqlite3_bind_parameter_index(statement, "@to"), to);
            Span<byte> serial = stackalloc byte[64];
            var last = 0;
            var rows = 0;
            int rc;
            while ((rc = raw.sqlite3_step(statement)) == raw.SQLITE_ROW)
            {
                if ((++rows & 0xFFFF) == 0) ct.ThrowIfCancellationRequested();
                var length = FromHex(raw.sqlite3_column_blob(statement, 0), serial);
                var revokedAt = new DateTimeOffset(raw.sqlite3_column_int64(statement, 1), TimeSpan.Zero);
                var reason = raw.sqlite3_column_type(statement, 2) == raw.SQLITE_NULL ? null : ReasonOf(raw.sqlite3_column_blob(statement, 2), ref last);
                each(serial[..length], revokedAt, reason);
            }
            if (rc != raw.SQLITE_DONE) SqliteException.ThrowExceptionForRC(rc, handle);
        }
    }

    /// <summary>The reason's name as stored (the enum's name, EF Core's string conversion) and its reasonCode; null for
    /// "unspecified" (S/MIME BR 7.2.2: omitted). Read as bytes and matched here: a CASE in SQL compared strings for
    /// every row.</summary>
    private static readonly (byte[] Name, X509RevocationReason? Code)[] Reasons =
        [.. Enum.GetValues<RevocationReason>().Select(r => (System.Text.Encoding.UTF8.GetBytes(r.ToString()), EntryReason(r)))];

    /// <summary>A CRL entry's reasonCode for <paramref name="reason"/>; null for "unspecified" (S/MIME BR 7.2.2: omitted).</summary>
    public static X509RevocationReason? EntryReason(RevocationReason reason) =>
        reason == RevocationReason.Unspecified ? null : (X509RevocationReason)(int)reason;

    private const string SqliteColumns =
        "SELECT \"SerialNumber\", \"RevokedAt\", \"RevocationReason\" FROM \"Certificates\" WHERE \"RevokedAt\" IS NOT NULL AND \"NotAfter\" >= @horizon";

    /// <summary>Mass revocations share a reason: the previous match (<paramref name="last"/>) is tried first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static X509RevocationReason? ReasonOf(ReadOnlySpan<byte> name, ref int last)
    {
        if (name.SequenceEqual(Reasons[last].Name)) return Reasons[last].Code;
        for (var i = 0; i < Reasons.Length; i++)
            if (name.SequenceEqual(Reasons[i].Name))
            {
                last = i;
                return Reasons[i].Code;
            }
        return null; // as the CASE of the other databases: a name this version does not know gives no reasonCode
    }

    /// <summary>Upper- or lower-case hexadecimal text (a serial as stored) into bytes; returns the length.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int FromHex(ReadOnlySpan<byte> hex, Span<byte> to)
    {
        if (hex.Length % 2 != 0 || hex.Length / 2 > to.Length)
            throw new InvalidOperationException("A certificate's serial number in the database is not hexadecimal.");
        for (var i = 0; i < hex.Length / 2; i++)
        {
            var high = Nibble(hex[2 * i]);
            var low = Nibble(hex[2 * i + 1]);
            if ((high | low) < 0) throw new InvalidOperationException("A certificate's serial number in the database is not hexadecimal.");
            to[i] = (byte)((high << 4) | low);
        }
        return hex.Length / 2;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        static int Nibble(byte c) => c switch
        {
            >= (byte)'0' and <= (byte)'9' => c - '0',
            >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
            >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
            _ => -1,
        };
    }

    /// <summary>Any other database (PostgreSQL): a data reader on the caller's connection and transaction.</summary>
    private static async Task ReadWithReaderAsync(CertPortalDbContext db, DateTimeOffset horizon, Row each, CancellationToken ct)
    {
        var certificates = db.Model.FindEntityType(typeof(IssuedCertificate))!;
        await db.Database.OpenConnectionAsync(ct);
        try
        {
            await using var command = db.Database.GetDbConnection().CreateCommand();
            command.Transaction = db.Database.CurrentTransaction?.GetDbTransaction();
            command.CommandTimeout = 600;
            command.CommandText = Columns + " ORDER BY \"SerialNumber\"";
            // The provider's own mapping writes the parameter (timestamptz on PostgreSQL).
            command.Parameters.Add(certificates.FindProperty(nameof(IssuedCertificate.NotAfter))!.GetRelationalTypeMapping()
                .CreateParameter(command, "@horizon", horizon));
            await using var reader = await command.ExecuteReaderAsync(System.Data.CommandBehavior.SequentialAccess, ct);
            var serial = new byte[64];
            while (await reader.ReadAsync(ct))
            {
                if (System.Buffers.OperationStatus.Done != Convert.FromHexString(reader.GetString(0), serial, out _, out var length))
                    throw new InvalidOperationException("A certificate's serial number in the database is not hexadecimal.");
                var revokedAt = Time(reader, 1);
                X509RevocationReason? reason = reader.IsDBNull(2) ? null : (X509RevocationReason)reader.GetInt32(2);
                each(serial.AsSpan(0, length), revokedAt, reason);
            }
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }

    private static DateTimeOffset Time(DbDataReader reader, int ordinal) => reader.GetFieldType(ordinal) == typeof(long)
        ? new DateTimeOffset(reader.GetInt64(ordinal), TimeSpan.Zero)
        : new DateTimeOffset(reader.GetFieldValue<DateTime>(ordinal).ToUniversalTime().Ticks, TimeSpan.Zero);
}
