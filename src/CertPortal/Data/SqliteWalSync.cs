using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;

namespace CertPortal.Data;

/// <summary>Pipelined durability for the group writer on SQLite (Linux). The writer's connection commits with
/// <c>synchronous=NORMAL</c>, so a commit appends its WAL frames and returns without an fsync, and the writer's turn (which
/// holds SQLite's one write lock) ends at once; this class makes the WAL durable on its own thread with <c>fdatasync</c> and
/// lets a group's units complete only after a sync that started after their commit had returned. While one sync runs, the
/// writer applies the units that arrive into its next transaction, left open, and commits it when the sync has ended
/// (<see cref="GroupCommitWriter"/>): one commit per sync, the units' work overlapping the sync. Before, the fsync ran inside
/// every commit, inside the writer's turn, and arriving units queued behind it. (Session 11 let the writer commit whatever had
/// arrived at once, several commits per sync: groups shrank to about one unit and every unit cost more.)
/// <para>Why "durable before the answer" still holds:
/// <list type="bullet">
/// <item>A commit in WAL mode is its frames appended to the -wal file (write(2): in the OS page cache, so a process crash,
/// kill -9 included, never loses it) ending with a commit frame; recovery after a power loss replays every transaction whose
/// frames, up to and including its commit frame, are on disk with valid checksums. <c>fdatasync</c> of the -wal file returns
/// after every page of that file written before the call, and the file size if it grew, is on the disk; so a sync that starts
/// after a commit has returned makes that commit, and every earlier one, durable. This is what SQLite's FULL does inside the
/// commit (SQLite's own authors name flushing the journal file as the way to make NORMAL commits durable:
/// sqlite.org/forum/forumpost/d1a6bc7c4cd2baca). <c>fdatasync</c> skips the inode's times, which the WAL's recovery never reads,
/// and SQLite reuses the -wal file from its start after a checkpoint, so its size rarely changes.</item>
/// <item>The file we sync must be the live -wal. SQLite deletes the -wal only when the database's last connection closes, and
/// only after a complete checkpoint, which with NORMAL syncs the WAL before copying it and the database file after (SQLite's
/// documentation of PRAGMA synchronous); truncation (journal_size_limit, TRUNCATE checkpoints) also follows a complete checkpoint.
/// So a commit whose -wal is gone is durable in the database file. Before each sync the kept descriptor is checked (a deleted
/// inode shows in /proc/self/fd) and opened again at the path when it was replaced; a new -wal's directory entry is synced once.
/// SQLite holds no POSIX locks on the -wal file (its locks are on the database and -shm files), so our descriptor, opened and
/// closed on our own, cannot drop one of SQLite's locks.</item>
/// <item>Checkpoints (automatic, in whichever connection commits past 1,000 WAL pages) sync the WAL before copying it into the
/// database file with NORMAL as with FULL, so a checkpoint never puts unsynced pages into the database file.</item>
/// <item>Every other connection (the CRL publisher, the outboxes, the console) still commits with FULL
/// (<see cref="SqliteDurability"/>): its fsync covers every frame written before it, ours included.</item>
/// <item>A power loss between a commit and its sync loses that commit; nobody had been answered for it, so nothing handed out
/// is lost: an enrollment's token is then unspent again and the client's retry gets a certificate, a revocation's client
/// repeats it.</item>
/// <item>Other connections can read a commit before its sync (SQLite publishes a commit in the -shm's wal-index at once; with FULL
/// only after the fsync). Where such a read decides an answer about another request's write, the answer waits for
/// <see cref="DurableAsync"/> (an enrollment collecting the certificate a concurrent or lost attempt was issued). Units run in
/// the writer see earlier groups' commits, and complete after a sync that covers those too. The directory outbox claims its rows
/// in a FULL commit before it publishes them, which syncs them first; the CRL publisher serves a CRL after its own FULL commit.
/// Not covered: the recipient look-up and OCSP read through their caches, and a miss in the millisecond between a commit and
/// its sync can serve the new certificate or status before it is durable; a power loss in that millisecond then leaves a
/// certificate that was shown to a sender but never answered to its subscriber (whose token is unspent again).</item>
/// <item>If <c>fdatasync</c> fails, what it should have written may never reach the disk, whatever later syncs say (Linux marks
/// the pages clean). Units waiting for it fail, every later write fails, and the service stops, as PostgreSQL does.</item>
/// </list></para></summary>
internal sealed partial class SqliteWalSync : IDisposable
{
    private readonly string _walPath;
    private readonly ILogger _logger;
    private readonly Action _failed;
    private readonly Thread _thread;
    // No spinning before blocking: on two cores a spinning waiter takes the CPU that requests need (see CertPortal.csproj).
    private readonly ManualResetEventSlim _wake = new(false, 0);
    private readonly ConcurrentQueue<(long Commit, Action<Exception?> Done)> _waiting = new();
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource _nextSync = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // Commits begun, commits returned (both numbered by the writer), and the last commit a finished sync covers.
    private long _begun, _returned, _durable;
    private int _wal = -1;
    private volatile Exception? _failure;
    private volatile bool _stopping;
    private long _syncs;

    private SqliteWalSync(string walPath, ILogger logger, Action failed)
    {
        _walPath = walPath;
        _logger = logger;
        _failed = failed;
        _thread = new Thread(Run) { IsBackground = true, Name = "SQLite WAL sync" };
        _thread.Start();
    }

    /// <summary>Syncs done so far.</summary>
    public long Syncs => Interlocked.Read(ref _syncs);

    /// <summary>Runs on the sync thread before each sync: tests hold the sync with it to see what waits for it.</summary>
    internal Action? BeforeSync { get; set; }

    /// <summary>For a context on a SQLite database file in WAL mode on Linux, a syncer for its -wal file; else null (PostgreSQL
    /// commits durably itself, an in-memory database has nothing to sync, elsewhere <c>fdatasync</c> is not at hand: those
    /// keep durable commits).</summary>
    public static async Task<SqliteWalSync?> ForAsync(System.Data.Common.DbConnection open, ILogger logger, Action failed)
    {
        if (!OperatingSystem.IsLinux() || open is not SqliteConnection connection) return null;
        await using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode";
        if (!string.Equals(await command.ExecuteScalarAsync() as string, "wal", StringComparison.OrdinalIgnoreCase)) return null;
        // The file as SQLite opened it (empty for an in-memory or temporary database).
        command.CommandText = "SELECT file FROM pragma_database_list WHERE name = 'main'";
        if (await command.ExecuteScalarAsync() is not string { Length: > 0 } file) return null;
        return new SqliteWalSync(file + "-wal", logger, failed);
    }

    /// <summary>Lets the writer's connection commit without syncing. The handle forgets its FULL setting
    /// (<see cref="SqliteDurability"/>), so whoever opens it from the pool after the writer gave it up sets FULL again.</summary>
    public static async Task CommitWithoutSyncAsync(System.Data.Common.DbConnection open)
    {
        var connection = (SqliteConnection)open;
        await using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA synchronous=NORMAL";
        await command.ExecuteNonQueryAsync();
        SqliteDurability.Forget(connection);
    }

    /// <summary>Before the writer commits: numbers the commit. Throws when a sync failed (nothing is written after that).</summary>
    public long BeginCommit()
    {
        if (_failure is { } failure) throw new IOException("The database's write-ahead log could not be made durable; the service is stopping.", failure);
        return Interlocked.Increment(ref _begun);
    }

    /// <summary>After the commit returned (or failed: then the sync covers nothing new, and nobody waits for it forever):
    /// <paramref name="done"/> runs on the sync thread after a sync that started after this call, with null, or with the
    /// failure of that sync.</summary>
    public void CommitReturned(long commit, Action<Exception?>? done)
    {
        if (done is not null) _waiting.Enqueue((commit, done));
        Volatile.Write(ref _returned, commit);
        _wake.Set();
    }

    /// <summary>Completes when every commit the caller could have read (all that began before this call) is durable: for an
    /// answer decided by reading another request's write outside the writer.</summary>
    public async Task DurableAsync()
    {
        var target = Volatile.Read(ref _begun);
        while (Volatile.Read(ref _durable) < target)
        {
            if (_failure is { } failure) throw new IOException("The database's write-ahead log could not be made durable.", failure);
            var next = Volatile.Read(ref _nextSync);
            // The sync that finished between the two reads may have covered it, and no further sync may come.
            if (Volatile.Read(ref _durable) >= target) break;
            await next.Task;
        }
    }

    /// <summary>After the writer's last commit: syncs what is left, completes its waiters and ends the thread.</summary>
    public Task StopAsync()
    {
        _stopping = true;
        _wake.Set();
        return _stopped.Task;
    }

    /// <summary>After <see cref="StopAsync"/> has completed.</summary>
    public void Dispose() => _wake.Dispose();

    private void Run()
    {
        try
        {
            while (true)
            {
                _wake.Wait();
                _wake.Reset();
                while (_failure is null && Volatile.Read(ref _durable) < Volatile.Read(ref _returned))
                {
                    var target = Volatile.Read(ref _returned);
                    Exception? failure = null;
                    try
                    {
                        Sync();
                    }
                    catch (IOException e)
                    {
                        failure = e;
                    }
                    if (failure is not null)
                    {
                        _failure = failure;
                        _logger.LogCritical(failure, "fdatasync of {Wal} failed: committed writes may not be durable; failing them and stopping the service", _walPath);
                    }
                    else
                    {
                        Volatile.Write(ref _durable, target);
                        Interlocked.Increment(ref _syncs);
                    }
                    while (_waiting.TryPeek(out var waiting) && (failure is not null || waiting.Commit <= target))
                    {
                        _waiting.TryDequeue(out _);
                        waiting.Done(failure);
                    }
                    // After a failure no sync comes again: the next "next sync" is over at once, and its waiters find the failure.
                    var next = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    if (failure is not null) next.SetResult();
                    Interlocked.Exchange(ref _nextSync, next).SetResult();
                    if (failure is not null) ThreadPool.QueueUserWorkItem(_ => _failed());
                }
                if (_failure is not null)
                    while (_waiting.TryDequeue(out var waiting)) waiting.Done(_failure);
                if (_stopping && (_failure is not null || Volatile.Read(ref _durable) >= Volatile.Read(ref _returned))) break;
            }
        }
        finally
        {
            CloseWal();
            _stopped.TrySetResult();
        }
    }

    /// <summary>fdatasync of the live -wal file. No file: every commit so far was checkpointed into the database file, which
    /// the checkpoint synced, and the -wal deleted (see the class summary).</summary>
    private void Sync()
    {
        BeforeSync?.Invoke();
        if (_wal >= 0 && Replaced(_wal)) CloseWal();
        if (_wal < 0 && !OpenWal()) return;
        if (FDataSync(_wal) != 0) throw new IOException($"fdatasync: errno {Marshal.GetLastPInvokeError()}");
    }

    private static bool Replaced(int fd) =>
        new FileInfo($"/proc/self/fd/{fd}").LinkTarget is not { } target || target.EndsWith(" (deleted)", StringComparison.Ordinal);

    private bool OpenWal()
    {
        _wal = Open(_walPath, ORdOnly | OCloExec);
        if (_wal < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno == ENoEnt) return false;
            throw new IOException($"open {_walPath}: errno {errno}");
        }
        // A new -wal's name must survive a power loss too: sync its directory once (SQLite does that at the WAL's first sync,
        // which with NORMAL may come only at a checkpoint).
        var directory = Open(Path.GetDirectoryName(_walPath)!, ORdOnly | OCloExec);
        if (directory < 0) throw new IOException($"open {Path.GetDirectoryName(_walPath)}: errno {Marshal.GetLastPInvokeError()}");
        try
        {
            if (FSync(directory) != 0) throw new IOException($"fsync of {Path.GetDirectoryName(_walPath)}: errno {Marshal.GetLastPInvokeError()}");
        }
        finally
        {
            Close(directory);
        }
        return true;
    }

    private void CloseWal()
    {
        if (_wal < 0) return;
        Close(_wal);
        _wal = -1;
    }

    private const int ORdOnly = 0, OCloExec = 0x80000, ENoEnt = 2;

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    private static partial int FDataSync(int fd);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FSync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
