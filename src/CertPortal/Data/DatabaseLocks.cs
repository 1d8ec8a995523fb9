using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;

namespace CertPortal.Data;

/// <summary>The one place that knows how each database provider locks. Features say what they need
/// (this row, this named resource) and never compare provider names themselves.
/// SQLite needs none of it: a write transaction (BEGIN IMMEDIATE) already excludes every other writer,
/// so each method is a no-op there. PostgreSQL runs writers concurrently under read committed, so a
/// read-decide-write sequence must lock what it reads first.</summary>
public static class DatabaseLocks
{
    /// <summary>By the context's type, which fixes the provider: EF Core's IsNpgsql() reads the provider's assembly name
    /// through reflection at every call, which was 1.5 % of a revocation's CPU (it asks three times).</summary>
    private static bool OnPostgres(CertPortalDbContext db) => db is NpgsqlCertPortalDbContext;

    /// <summary>Locks one certificate row until the caller's transaction ends (SELECT … FOR UPDATE), so the
    /// caller's next read sees any change committed by a concurrent writer of the same row.</summary>
    public static async Task LockCertificateAsync(this CertPortalDbContext db, string serialNumber, CancellationToken ct)
    {
        if (!OnPostgres(db)) return;
        await DirectSql.LockCertificateAsync(db, serialNumber, ct);
    }

    /// <summary>A transaction-scoped named lock (pg_advisory_xact_lock): held until the caller's transaction
    /// commits or rolls back, so whoever takes it next reads what the holder committed. A plain command; in the group
    /// writer it travels with the next command that reads (see <see cref="DirectSql"/>), which still runs after the lock
    /// is granted: statements of a batch run one after another, each with its own snapshot.</summary>
    public static async Task LockNamedAsync(this CertPortalDbContext db, string name, CancellationToken ct)
    {
        if (!OnPostgres(db)) return;
        await DirectSql.LockNamedAsync(db, NamePrefix + name, ct);
    }

    /// <summary>PostgreSQL: <see cref="LockNamedAsync"/> of <paramref name="prefix"/> + the SpkiSha256 of the certificate
    /// <paramref name="serialNumber"/>, the name taken by the database from the row, so that the caller needs no read first and the
    /// lock still comes before the row's (the order every holder of both takes them). SpkiSha256 is filled for every row before the
    /// service serves (the start-up backfill); a row without it is not locked here.</summary>
    public static async Task LockCertificateKeyAsync(this CertPortalDbContext db, string prefix, string serialNumber, CancellationToken ct)
    {
        if (!OnPostgres(db)) return;
        await DirectSql.LockNamedOfCertificateAsync(db, NamePrefix + prefix, serialNumber, ct);
    }

    private const string NamePrefix = "certportal:";

    /// <summary>PostgreSQL: the transactions the caller's snapshot does not see as finished, as the oldest still running
    /// (pg_snapshot_xmin) and the first not yet started (pg_snapshot_xmax), 64-bit transaction ids. Read in the same snapshot as the
    /// caller's other reads (open a repeatable read transaction first), so that "every transaction running then has ended" can be
    /// decided later: the oldest running then is at or past this xmax. Null where writers cannot interleave (SQLite).</summary>
    public static async Task<(long OldestRunning, long FirstNotStarted)?> RunningTransactionsAsync(this CertPortalDbContext db, CancellationToken ct)
    {
        if (!OnPostgres(db)) return null;
        var row = await db.Database.SqlQueryRaw<RunningTransactions>(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS \"OldestRunning\", " +
            "pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS \"FirstNotStarted\"").SingleAsync(ct);
        return (row.OldestRunning, row.FirstNotStarted);
    }

    private sealed record RunningTransactions(long OldestRunning, long FirstNotStarted);

    /// <summary>True where concurrent writers can interleave (PostgreSQL): work queues must then claim rows
    /// (FOR UPDATE SKIP LOCKED plus a lease) instead of assuming they are the only worker.</summary>
    public static bool HasConcurrentWriters(this CertPortalDbContext db) => OnPostgres(db);

    /// <summary>Held across several transactions (migrations, then CA creation) by a session-level advisory lock on a
    /// connection of its own, released on dispose. Nodes starting together on one PostgreSQL database thus migrate
    /// and create the CA one after another: the second finds the schema and the CA in place. Creates the database
    /// first when it does not exist yet, since the lock lives in it.</summary>
    public static async Task<IAsyncDisposable> LockStartupAsync(this CertPortalDbContext db, CancellationToken ct)
    {
        if (!OnPostgres(db)) return NoLock.Instance;
        var creator = db.GetService<IRelationalDatabaseCreator>();
        if (!await creator.ExistsAsync(ct))
        {
            try
            {
                await creator.CreateAsync(ct);
            }
            catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.DuplicateDatabase or PostgresErrorCodes.UniqueViolation)
            {
                // Another node created it a moment earlier.
            }
        }
        // Unpooled: a pooled connection returned to the pool would keep the session, and with it the lock.
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(db.Database.GetConnectionString()) { Pooling = false }.ConnectionString);
        await connection.OpenAsync(ct);
        // No command timeout: the wait lasts as long as another node's migrations and CA creation.
        await using (var take = new NpgsqlCommand("SELECT pg_advisory_lock(hashtext('certportal:startup'))", connection) { CommandTimeout = 0 })
            await take.ExecuteNonQueryAsync(ct);
        return connection; // closing the session releases its advisory locks
    }

    /// <summary>A named lock held across transactions by a session of its own (pg_try_advisory_lock on an unpooled
    /// connection), or null at once when another session holds it. Released on dispose, or when the holder's process
    /// dies, since its session ends with it: a long job is done by one node at a time and taken over after a crash
    /// without waiting for a lease. SQLite (one node's database): a lock of this process. The session can also end while
    /// the holder lives (PostgreSQL restarted, the backend terminated, the network cut): a long job asks
    /// <see cref="HeldLock.IsStillHeldAsync"/> before each step, to stop soon after. That check cannot keep a step from
    /// happening twice (the lock can pass on between the check and the step's commit): such a step is made conditional, in
    /// its own transaction, on a row that the next holder changes before it starts (see DirectoryEnrollment's run fence).</summary>
    public static async Task<HeldLock?> TryHoldNamedAsync(this CertPortalDbContext db, string name, CancellationToken ct)
    {
        if (!OnPostgres(db))
        {
            var local = ProcessLocks.GetOrAdd(name, _ => new SemaphoreSlim(1, 1));
            return local.Wait(0, CancellationToken.None) ? new ProcessLock(local) : null; // a try: it never waits
        }
        // Unpooled: a pooled connection returned to the pool would keep the session, and with it the lock.
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(db.Database.GetConnectionString()) { Pooling = false }.ConnectionString);
        try
        {
            await connection.OpenAsync(ct);
            await using var take = new NpgsqlCommand("SELECT pg_try_advisory_lock(hashtext(@name))", connection);
            take.Parameters.AddWithValue("name", "certportal:" + name);
            if (await take.ExecuteScalarAsync(ct) is true) return new SessionLock(connection);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
        await connection.DisposeAsync();
        return null;
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, SemaphoreSlim> ProcessLocks = new();

    /// <summary>A lock of this process: held as long as the process lives, which is as long as anyone can ask.</summary>
    private sealed class ProcessLock(SemaphoreSlim held) : HeldLock
    {
        public override Task<bool> IsStillHeldAsync(CancellationToken ct) => Task.FromResult(true);

        public override ValueTask DisposeAsync()
        {
            held.Release();
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>A session-level advisory lock: PostgreSQL releases it only on pg_advisory_unlock, which nobody sends on this
    /// connection, or when the session ends. So the session answering a query proves the lock is still held, and a
    /// connection Npgsql found broken (it never reconnects one) or a query that fails means it may be another's now.</summary>
    private sealed class SessionLock(NpgsqlConnection connection) : HeldLock
    {
        public override async Task<bool> IsStillHeldAsync(CancellationToken ct)
        {
            if (connection.State != System.Data.ConnectionState.Open) return false;
            try
            {
                await using var alive = new NpgsqlCommand("SELECT 1", connection);
                await alive.ExecuteScalarAsync(ct);
                return true;
            }
            catch (NpgsqlException) when (!ct.IsCancellationRequested)
            {
                return false; // terminated (57P01), server gone, connection reset, timed out: none proves the session lives
            }
        }

        public override ValueTask DisposeAsync() => connection.DisposeAsync(); // closing the session releases its locks
    }

    private sealed class NoLock : IAsyncDisposable
    {
        public static readonly NoLock Instance = new();
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}

/// <summary>A named lock held across transactions (<see cref="DatabaseLocks.TryHoldNamedAsync"/>); released on dispose.</summary>
public abstract class HeldLock : IAsyncDisposable
{
    /// <summary>True while the lock is certainly still this holder's; false once it may have passed to another (on
    /// PostgreSQL: its session ended). A round trip on PostgreSQL: ask it per step of a long job, not per row read.</summary>
    public abstract Task<bool> IsStillHeldAsync(CancellationToken ct);

    public abstract ValueTask DisposeAsync();
}
