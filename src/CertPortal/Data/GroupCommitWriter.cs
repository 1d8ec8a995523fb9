using System.Threading.Channels;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Data;

/// <summary>One in-process writer for the hot write paths (enrollments, token creations). Callers do their
/// expensive work (CSR checks, signing) first and hand over a small unit that adds rows or runs a conditional
/// update; the writer applies every queued unit (up to <see cref="MaxGroup"/>) in one transaction and commits
/// once, so a burst of enrollments costs one durable commit (one fsync) instead of one each, and writers never
/// contend for the database lock and back off. A unit completes only after its group's commit is durable: what
/// the caller answers is durable. On PostgreSQL that is when the commit returns. On a SQLite file the writer pipelines
/// (<see cref="SqliteWalSync"/>): it commits without a sync and a thread of its own syncs the WAL, and while that sync
/// runs the writer applies the units that arrive into the next, still open transaction, which it commits when the sync
/// has ended: one commit per sync, the units' work overlapping the sync instead of queueing behind it. When a group fails
/// (a constraint, a deadlock with another node), every unit is retried in smaller groups down to the failing unit alone,
/// so one bad unit fails only its own request.</summary>
public sealed class GroupCommitWriter(IServiceScopeFactory scopes, IHostApplicationLifetime lifetime, ILogger<GroupCommitWriter> logger) : BackgroundService
{
    /// <summary>Large enough that a burst of requests shares one commit, small enough that one transaction
    /// stays short (a few ms) and a failed group is cheap to replay unit by unit.</summary>
    public const int MaxGroup = 256;

    private readonly Channel<IUnit> _queue = Channel.CreateUnbounded<IUnit>(new UnboundedChannelOptions { SingleReader = true });
    private long _commits;
    private long _units;
    private int _queued;

    /// <summary>Commits made so far (groups and lone retries): with <see cref="UnitsCommitted"/>, how well grouping works.</summary>
    public long Commits => Interlocked.Read(ref _commits);
    public long UnitsCommitted => Interlocked.Read(ref _units);

    /// <summary>Units queued and not yet taken into a group.</summary>
    public int Queued => Volatile.Read(ref _queued);

    /// <summary>WAL syncs on SQLite (one per commit of the pipelined writer); 0 where commits are durable themselves.</summary>
    public long Syncs => _walSync?.Syncs ?? 0;

    /// <summary>Units applied in an open transaction of the pipelined writer and not yet committed.</summary>
    public int Applied => Volatile.Read(ref _applied);

    internal SqliteWalSync? WalSync => _walSync;

    /// <summary>Completes when every write this writer had begun to commit is durable. For an answer that was decided by reading,
    /// outside the writer, what another request wrote (collecting the certificate a concurrent or earlier attempt was issued):
    /// on SQLite a commit is visible to other connections before its sync.</summary>
    public Task DurableAsync() => _walSync?.DurableAsync() ?? Task.CompletedTask;

    /// <summary>Queues <paramref name="apply"/>, which runs on the writer's context inside the group's transaction and
    /// may run a second time (alone, on a fresh context) if its group fails: it must create its entities itself and
    /// decide only from what it reads in that transaction. The task ends once the commit is durable.</summary>
    public Task<T> WriteAsync<T>(Func<CertPortalDbContext, CancellationToken, Task<T>> apply)
    {
        var unit = new Unit<T>(apply);
        Enqueue(unit);
        return unit.Task;
    }

    /// <summary>Queues a unit in two steps: <paramref name="first"/> issues the reads a decision needs (locks, a conditional
    /// update) and returns their answers as <see cref="Later{T}"/> values; <paramref name="then"/> decides from them and writes.
    /// On PostgreSQL the first steps of consecutive two-step units in a group go to the database together, in one round trip,
    /// before any of their second steps (which run in queue order), instead of one round trip per unit; a first step must therefore
    /// not depend on what another unit's second step writes. Both steps may run again alone, as for <see cref="WriteAsync{T}"/>.
    /// <paramref name="keys"/> name what the unit reads and writes (a key's lock name, a certificate): a unit sharing a key with an
    /// earlier unit of the run starts a new run, so its first step is sent after that unit's second step and sees its writes
    /// (a keyCompromise and an enrollment of that key, a hold and a release of one certificate).
    /// <paramref name="learnt"/>: keys the first step's answers name, which the unit could not know before (the key of the certificate
    /// it read). Its first step must then only lock and read, so that it can run again: when an earlier unit of the run has one of
    /// those keys, it runs again after that unit's second step and before its own. Only such units follow it in its run.</summary>
    public Task<T> WriteAsync<TFirst, T>(IReadOnlyCollection<string> keys, Func<CertPortalDbContext, CancellationToken, Task<TFirst>> first,
        Func<CertPortalDbContext, TFirst, CancellationToken, Task<T>> then, Func<TFirst, IEnumerable<string>>? learnt = null)
    {
        var unit = new TwoStepUnit<TFirst, T>(keys, first, then, learnt);
        Enqueue(unit);
        return unit.Task;
    }

    private void Enqueue(IUnit unit)
    {
        Interlocked.Increment(ref _queued);
        if (_queue.Writer.TryWrite(unit)) return;
        Interlocked.Decrement(ref _queued);
        throw new InvalidOperationException("The database writer has stopped (the service is shutting down).");
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // No new units; the loop drains and commits what is queued, then ends.
        _queue.Writer.TryComplete();
        await base.StopAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var group = new List<IUnit>(MaxGroup);
        try
        {
            // Deliberately not cancelled by stoppingToken: queued units belong to requests waiting for their answer.
            while (await _queue.Reader.WaitToReadAsync(CancellationToken.None))
            {
                if (await PipelinesAsync())
                {
                    await PipelineAsync();
                    break;
                }
                while (group.Count < MaxGroup && _queue.Reader.TryRead(out var unit)) group.Add(unit);
                Interlocked.Add(ref _queued, -group.Count);
                await CommitAsync(group);
                group.Clear();
            }
        }
        finally
        {
            // The last commits' units complete when the sync that covers them ends.
            if (_walSync is { } sync)
            {
                await sync.StopAsync();
                sync.Dispose();
            }
            await ForgetContextAsync();
        }
    }

    /// <summary>Whether this writer commits without syncing and pipelines (a SQLite file in WAL mode on Linux), decided at the
    /// first group; until the database can be opened, groups go the plain way (and fail there).</summary>
    private async Task<bool> PipelinesAsync()
    {
        if (!_walSyncChecked)
        {
            try
            {
                await ContextAsync();
            }
            catch (Exception e)
            {
                logger.LogDebug(e, "The writer could not open its database connection");
                await ForgetContextAsync();
            }
        }
        return _walSync is not null;
    }

    /// <summary>The pipelined loop (SQLite file): units are applied as they arrive into an open transaction; it is committed,
    /// without a sync, as soon as the sync of the previous commit has ended, and its units complete when the sync that then
    /// starts has ended. So there is never more than one commit per sync: while a sync runs, what arrives joins the next
    /// commit instead of making one of its own (committing whatever had arrived at once, session 11's pipelined version made
    /// groups of about one unit, each commit writing the touched pages again and syncing on its own).</summary>
    private async Task PipelineAsync()
    {
        var sync = _walSync!;
        var applied = new List<IUnit>(MaxGroup);
        var results = new List<object?>(MaxGroup);
        var batch = new List<IUnit>(MaxGroup);
        Microsoft.EntityFrameworkCore.Storage.IDbContextTransaction? tx = null;
        // Set when the sync of the last commit has ended (its units completed); the next commit waits for it.
        var synced = Task.CompletedTask;
        // The channel's wait for the next unit, kept across turns: a second wait would cancel the first.
        Task<bool>? arrival = null;
        var open = true;
        while (true)
        {
            while (applied.Count + batch.Count < MaxGroup && _queue.Reader.TryRead(out var unit)) batch.Add(unit);
            Interlocked.Add(ref _queued, -batch.Count);
            if (batch.Count > 0)
            {
                try
                {
                    var db = await ContextAsync();
                    tx ??= await db.Database.BeginTransactionAsync(CancellationToken.None);
                    var answers = await ApplyAsync(db, batch);
                    applied.AddRange(batch);
                    results.AddRange(answers);
                }
                catch (Exception e)
                {
                    applied.AddRange(batch);
                    await RecoverAsync(e, tx, applied, synced);
                    tx = null;
                    synced = Task.CompletedTask;
                    applied = new List<IUnit>(MaxGroup);
                    results = new List<object?>(MaxGroup);
                }
                batch.Clear();
                Volatile.Write(ref _applied, applied.Count);
            }
            if (applied.Count > 0 && synced.IsCompleted)
            {
                long commit = 0;
                try
                {
                    // What the units left tracked is saved once per commit, not after every batch (a batch is often one unit).
                    if (_db!.ChangeTracker.HasChanges()) await _db.SaveChangesAsync(CancellationToken.None);
                    commit = sync.BeginCommit();
                    await tx!.CommitAsync(CancellationToken.None);
                }
                catch (Exception e)
                {
                    if (commit != 0) sync.CommitReturned(commit, null);
                    await RecoverAsync(e, tx, applied, synced);
                    tx = null;
                    synced = Task.CompletedTask;
                    applied = new List<IUnit>(MaxGroup);
                    results = new List<object?>(MaxGroup);
                    continue;
                }
                await tx.DisposeAsync();
                tx = null;
                _db!.ChangeTracker.Clear();
                Interlocked.Increment(ref _commits);
                Interlocked.Add(ref _units, applied.Count);
                Volatile.Write(ref _applied, 0);
                var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                var (units, answers) = (applied, results);
                sync.CommitReturned(commit, failure =>
                {
                    for (var i = 0; i < units.Count; i++)
                    {
                        if (failure is null) units[i].Complete(answers[i]);
                        else units[i].Fail(failure);
                    }
                    done.TrySetResult();
                });
                synced = done.Task;
                applied = new List<IUnit>(MaxGroup);
                results = new List<object?>(MaxGroup);
                continue;
            }
            if (!open && applied.Count == 0)
            {
                await synced;
                return;
            }
            // Wait for a unit (room left in the open transaction) or for the sync that the next commit waits for.
            if (!open || applied.Count >= MaxGroup)
            {
                await synced;
                continue;
            }
            arrival ??= _queue.Reader.WaitToReadAsync(CancellationToken.None).AsTask();
            if (applied.Count > 0 && !arrival.IsCompleted) await Task.WhenAny(arrival, synced);
            if (applied.Count == 0 || arrival.IsCompleted)
            {
                open = await arrival;
                arrival = null;
            }
        }
    }

    /// <summary>A failed apply or commit in the pipelined loop: the open transaction is rolled back, and its units are retried
    /// the plain way (in halves down to the failing unit, each commit synced before its units complete) once the sync in flight
    /// has ended, so commits stay in order.</summary>
    private async Task RecoverAsync(Exception e, Microsoft.EntityFrameworkCore.Storage.IDbContextTransaction? tx, List<IUnit> units, Task synced)
    {
        logger.LogDebug(e, "A pipelined group of {Count} writes failed; retrying it in halves", units.Count);
        Volatile.Write(ref _applied, 0);
        if (tx is not null)
        {
            try
            {
                await tx.DisposeAsync();
            }
            catch (Exception rollback)
            {
                logger.LogDebug(rollback, "Rolling back the failed group failed");
            }
        }
        await ForgetContextAsync();
        await synced;
        if (units.Count == 1)
        {
            // Alone already: its failure is its own (as CommitAsync decides for a single unit).
            units[0].Fail(e);
            return;
        }
        var half = units.Count / 2;
        await CommitAsync(units.Take(half).ToList());
        await CommitAsync(units.Skip(half).ToList());
    }

    /// <summary>Commits the group; if that fails, each half is tried on its own, down to single units, so a bad
    /// unit costs its group about 2·log2(n) extra transactions and fails nothing but itself.</summary>
    private async Task CommitAsync(IReadOnlyList<IUnit> group)
    {
        try
        {
            await RunAsync(group);
        }
        catch (Exception e) when (group.Count > 1)
        {
            logger.LogDebug(e, "A group of {Count} writes failed; retrying it in halves", group.Count);
            var half = group.Count / 2;
            await CommitAsync(group.Take(half).ToList());
            await CommitAsync(group.Skip(half).ToList());
        }
        catch (Exception e)
        {
            group[0].Fail(e);
        }
    }

    /// <summary>The writer's context, kept with its connection open from one successful group to the next: SQLite then
    /// keeps the compiled statements (<see cref="DirectSql"/>) and the page cache of the connection that does nearly all
    /// the writing, where a pooled connection per group compiled every statement again and re-read pages another
    /// connection's commit had made stale. Any failure drops it: a retried unit runs on a fresh context and connection.</summary>
    private AsyncServiceScope? _scope;
    private CertPortalDbContext? _db;
    private SqliteWalSync? _walSync;
    private bool _walSyncChecked;
    private int _applied;

    private async Task<CertPortalDbContext> ContextAsync()
    {
        if (_db is not null) return _db;
        _scope = scopes.CreateAsyncScope();
        _db = _scope.Value.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        // No savepoint around each SaveChanges (two more statements, on PostgreSQL two more round trips, per save): a
        // failed save fails the group, which is retried in halves on fresh transactions, never resumed.
        _db.Database.AutoSavepointsEnabled = false;
        await _db.Database.OpenConnectionAsync(CancellationToken.None);
        if (!_walSyncChecked)
        {
            _walSync = await SqliteWalSync.ForAsync(_db.Database.GetDbConnection(), logger, lifetime.StopApplication);
            _walSyncChecked = true;
        }
        if (_walSync is not null) await SqliteWalSync.CommitWithoutSyncAsync(_db.Database.GetDbConnection());
        return _db;
    }

    private async Task ForgetContextAsync()
    {
        _db = null;
        if (_scope is { } scope)
        {
            _scope = null;
            await scope.DisposeAsync();
        }
    }

    private async Task RunAsync(IReadOnlyList<IUnit> units)
    {
        try
        {
            await RunOnAsync(await ContextAsync(), units);
        }
        catch
        {
            await ForgetContextAsync();
            throw;
        }
    }

    private async Task RunOnAsync(CertPortalDbContext db, IReadOnlyList<IUnit> units)
    {
        await using var tx = await db.Database.BeginTransactionAsync(CancellationToken.None);
        // PostgreSQL: inserts and locks travel with the next command that needs an answer (DirectSql), so a group
        // costs a few round trips rather than several per unit.
        DirectSql.BeginDeferring(db);
        object?[] results;
        long commit = 0;
        try
        {
            results = await ApplyAsync(db, units);
            await db.SaveChangesAsync(CancellationToken.None);
            commit = _walSync?.BeginCommit() ?? 0;
            // PostgreSQL: the commands still held back go with the COMMIT, in one round trip (DirectSql).
            await tx.CommitAsync(CancellationToken.None);
        }
        finally
        {
            DirectSql.EndDeferring(db);
            // A failed commit covers nothing new, but nobody may wait for it forever.
            if (commit != 0) _walSync!.CommitReturned(commit, null);
        }
        // What the units left tracked is committed; the next group starts with nothing to compare.
        db.ChangeTracker.Clear();
        Interlocked.Increment(ref _commits);
        Interlocked.Add(ref _units, units.Count);
        // The pipelined writer's retries (after a failed group) commit without a sync too: wait for one.
        if (_walSync is not null) await _walSync.DurableAsync();
        for (var i = 0; i < units.Count; i++) units[i].Complete(results[i]);
    }

    /// <summary>Runs the units in the open transaction, in queue order (what they leave tracked is saved by the caller).</summary>
    private static async Task<object?[]> ApplyAsync(CertPortalDbContext db, IReadOnlyList<IUnit> units)
    {
        var results = new object?[units.Count];
        for (var i = 0; i < units.Count;)
        {
            if (!units[i].TwoStep)
            {
                results[i] = await units[i].ApplyAsync(db, null);
                i++;
                continue;
            }
            // A run of two-step units: every first step, one flush (their reads answered in one round trip), every second step.
            // The run ends before a unit that shares a key with one in it (see WriteAsync's keys), and after a unit that learns
            // keys, before the first unit whose first step cannot run again.
            var end = i;
            var firsts = new List<object?>();
            var keys = new HashSet<string>(StringComparer.Ordinal);
            var learning = false;
            for (; end < units.Count && units[end].TwoStep && (end == i || !units[end].Keys.Any(keys.Contains)) &&
                   (!learning || units[end].LearnsKeys); end++)
            {
                keys.UnionWith(units[end].Keys);
                learning |= units[end].LearnsKeys;
                firsts.Add(await units[end].FirstAsync(db));
            }
            await DirectSql.FlushAsync(db, CancellationToken.None);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (var k = i; k < end; k++)
            {
                var first = firsts[k - i];
                if (learning)
                {
                    // A unit that shares a learnt key with an earlier unit of the run read before that unit wrote: its first
                    // step runs again, now (two keyCompromise revocations of one key, a revocation after an enrollment of its key).
                    var unitKeys = units[k].Keys.Concat(units[k].LearntKeys(first)).ToList();
                    if (unitKeys.Any(seen.Contains))
                    {
                        first = await units[k].FirstAsync(db);
                        await DirectSql.FlushAsync(db, CancellationToken.None);
                        unitKeys = [.. units[k].Keys, .. units[k].LearntKeys(first)];
                    }
                    seen.UnionWith(unitKeys);
                }
                results[k] = await units[k].ApplyAsync(db, first);
            }
            i = end;
        }
        return results;
    }

    private interface IUnit
    {
        bool TwoStep { get; }
        IReadOnlyCollection<string> Keys { get; }
        bool LearnsKeys { get; }
        IEnumerable<string> LearntKeys(object? first);
        Task<object?> FirstAsync(CertPortalDbContext db);
        Task<object?> ApplyAsync(CertPortalDbContext db, object? first);
        void Complete(object? result);
        void Fail(Exception e);
    }

    private class Unit<T> : IUnit
    {
        // Continuations run on the thread pool, not on the writer's loop.
        private readonly TaskCompletionSource<T> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly Func<CertPortalDbContext, CancellationToken, Task<T>>? _apply;

        protected Unit() { }

        public Unit(Func<CertPortalDbContext, CancellationToken, Task<T>> apply) => _apply = apply;

        public Task<T> Task => _done.Task;
        public virtual bool TwoStep => false;
        public virtual IReadOnlyCollection<string> Keys => [];
        public virtual bool LearnsKeys => false;
        public virtual IEnumerable<string> LearntKeys(object? first) => [];
        public virtual Task<object?> FirstAsync(CertPortalDbContext db) => System.Threading.Tasks.Task.FromResult<object?>(null);
        public virtual async Task<object?> ApplyAsync(CertPortalDbContext db, object? first) => await _apply!(db, CancellationToken.None);
        public void Complete(object? result) => _done.TrySetResult((T)result!);
        public void Fail(Exception e) => _done.TrySetException(e);
    }

    private sealed class TwoStepUnit<TFirst, T>(IReadOnlyCollection<string> keys, Func<CertPortalDbContext, CancellationToken, Task<TFirst>> first,
        Func<CertPortalDbContext, TFirst, CancellationToken, Task<T>> then, Func<TFirst, IEnumerable<string>>? learnt) : Unit<T>
    {
        public override bool TwoStep => true;
        public override IReadOnlyCollection<string> Keys => keys;
        public override bool LearnsKeys => learnt is not null;
        public override IEnumerable<string> LearntKeys(object? answers) => learnt is null ? [] : learnt((TFirst)answers!);
        public override async Task<object?> FirstAsync(CertPortalDbContext db) => await first(db, CancellationToken.None);
        public override async Task<object?> ApplyAsync(CertPortalDbContext db, object? answers) => await then(db, (TFirst)answers!, CancellationToken.None);
    }
}
