using System.Threading.Channels;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Data;

/// <summary>One in-process writer for the hot write paths (enrollments, token creations). Callers do their
/// expensive work (CSR checks, an RSA signature) first and hand over a small unit that adds rows or runs a conditional
/// update (an ECDSA signature, ~35 µs, may run in a unit's second step: an enrollment signs for the token its first step claimed); the writer applies every queued unit (up to <see cref="MaxGroup"/>) in one transaction and commits
/// once, so a burst of enrollments costs one durable commit (one fsync) instead of one each, and writers never
/// contend for the database lock and back off. A unit completes only after its group's commit returned: what
/// the caller answers is durable. When a group fails (a constraint, a deadlock with another node), every unit
/// is retried in smaller groups down to the failing unit alone, so one bad unit fails only its own request.
/// <para>On PostgreSQL two groups overlap, each on a connection of its own (a lane, see <see cref="Lanes"/>): the next group starts as soon as the
/// previous one has sent its commit, so its reads and writes run while the database makes that commit durable (the WAL's
/// fsync, 1-2 ms on this project's machine, was half a group's time) instead of after it. The two transactions are ordered by
/// PostgreSQL's locks exactly as those of two nodes are (a row's lock, a key's advisory lock): a read that depends on the
/// earlier group's writes waits for its commit. Units that name a common key (see <see cref="WriteAsync{TFirst, T}"/>) are
/// never in overlapping groups: the later group waits for the earlier one to end, retries included, so they keep their
/// queue order. A group of units that write expecting success (token enrollments, <see cref="WriteExpectingSuccessAsync{TFirst, T}"/>)
/// is one round trip and does not overlap the next. SQLite has one writer at a time, so there each group still starts after the
/// previous one has ended.</para></summary>
public sealed class GroupCommitWriter(IServiceScopeFactory scopes, ILogger<GroupCommitWriter> logger) : BackgroundService
{
    /// <summary>Large enough that a burst of requests shares one commit, small enough that one transaction
    /// stays short (a few ms) and a failed group is cheap to replay unit by unit.</summary>
    public const int MaxGroup = 256;

    /// <summary>How many groups may be in flight at once where the database allows it (PostgreSQL; see the class summary). Three and
    /// four measured no better than two: each more lane makes the groups smaller and adds commits, at more CPU per unit.</summary>
    private const int Lanes = 2;

    private readonly Channel<IUnit> _queue = Channel.CreateUnbounded<IUnit>(new UnboundedChannelOptions { SingleReader = true });
    private long _commits;
    private long _units;
    private int _queued;

    /// <summary>Commits made so far (groups and lone retries): with <see cref="UnitsCommitted"/>, how well grouping works.</summary>
    public long Commits => Interlocked.Read(ref _commits);
    public long UnitsCommitted => Interlocked.Read(ref _units);

    /// <summary>Units queued and not yet taken into a group.</summary>
    public int Queued => Volatile.Read(ref _queued);

    /// <summary>Queues <paramref name="apply"/>, which runs on the writer's context inside the group's transaction and
    /// may run a second time (alone, on a fresh context) if its group fails: it must create its entities itself and
    /// decide only from what it reads in that transaction. The task ends after the commit.</summary>
    /// <param name="resumeOnWriter">The caller only answers after the write: see <see cref="Answers"/>.</param>
    public Task<T> WriteAsync<T>(Func<CertPortalDbContext, CancellationToken, Task<T>> apply, bool resumeOnWriter = false)
    {
        var unit = new Unit<T>(apply, Answers(resumeOnWriter));
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
        Func<CertPortalDbContext, TFirst, CancellationToken, Task<T>> then, Func<TFirst, IEnumerable<string>>? learnt = null, bool resumeOnWriter = false)
    {
        var unit = new TwoStepUnit<TFirst, T>(keys, first, then, learnt, expectingSuccess: null, Answers(resumeOnWriter));
        Enqueue(unit);
        return unit.Task;
    }

    /// <summary>As <see cref="WriteAsync{TFirst, T}"/>,
    /// with a way to write that expects the decision to go the usual way: <paramref name="expectingSuccess"/> issues the reads and the
    /// writes at once, with a statement that fails the transaction where the decision would not have gone that way (a token already
    /// spent, a blocked key), and returns the answer for that way. Where commands travel in batches (PostgreSQL) a group's first
    /// attempt runs such units so: no answer is waited for before the commit, and a group of them costs one round trip (its
    /// statements and COMMIT in one batch) instead of two. When the group fails, its retries run <paramref name="first"/> and
    /// <paramref name="then"/>, which decide from the answers, so a refusal still fails nothing but its own unit.</summary>
    public Task<T> WriteExpectingSuccessAsync<TFirst, T>(IReadOnlyCollection<string> keys, Func<CertPortalDbContext, CancellationToken, Task<TFirst>> first,
        Func<CertPortalDbContext, TFirst, CancellationToken, Task<T>> then, Func<CertPortalDbContext, CancellationToken, Task<T>> expectingSuccess,
        bool resumeOnWriter = false)
    {
        var unit = new TwoStepUnit<TFirst, T>(keys, first, then, learnt: null, expectingSuccess, Answers(resumeOnWriter));
        Enqueue(unit);
        return unit.Task;
    }

    /// <summary>How a unit's caller resumes once its group has committed: on the thread pool, or, for a caller that only answers after
    /// its write (<paramref name="resumeOnWriter"/>, an enrollment) and where groups run one at a time (SQLite), on the writer's thread
    /// at once, before the next group begins: what the caller does until its next await (the answer handed to Kestrel, ~20 µs) then
    /// becomes part of the writer's turn. Queued to the thread pool (RunContinuationsAsynchronously) an enrollment waited 0.2-0.45 ms
    /// (median; 8 clients, EC-P256) for a thread while the writer's own was already in the next group's commit and fsync, so clients
    /// came back that much later and the writer, the serial part, committed smaller groups (docs/benchmark-history.md, session 19).
    /// Work after a write that takes longer (a PKCS#12 to build, a CRL to publish) must not hold up the writer: such callers keep the
    /// thread pool. Where groups overlap (PostgreSQL) every caller resumes on the thread pool: measured there in session 20, the hop it
    /// would save is short (the writer's awaits hand their thread back; ~50 µs median) while the answers written inline hold the
    /// lane, and two services side by side ran no faster (docs/benchmark-history.md, "a request's timeline at the fast state").</summary>
    private TaskCreationOptions Answers(bool resumeOnWriter) =>
        resumeOnWriter && !_overlap ? TaskCreationOptions.None : TaskCreationOptions.RunContinuationsAsynchronously;

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
        var next = 0;
        try
        {
            // Deliberately not cancelled by stoppingToken: queued units belong to requests waiting for their answer.
            while (await _queue.Reader.WaitToReadAsync(CancellationToken.None))
            {
                var lane = _lanes[next];
                // A lane runs one transaction at a time: its previous group has ended (committed, or failed and retried).
                await lane.Running;
                var group = new List<IUnit>();
                while (group.Count < MaxGroup && _queue.Reader.TryRead(out var unit)) group.Add(unit);
                Interlocked.Add(ref _queued, -group.Count);
                // A group with a key of a group still in flight waits for that one to end, retries included (queue order).
                foreach (var other in _lanes)
                    if (other != lane && !other.Running.IsCompleted && group.Any(u => u.Keys.Any(other.Keys.Contains))) await other.Running;
                lane.Keys = group.SelectMany(u => u.Keys).ToHashSet(StringComparer.Ordinal);
                var committing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                lane.Running = CommitAsync(lane, group, committing);
                // The next group is formed once this one has sent its commit (or has ended). A group whose units all write expecting
                // success is one round trip, its statements sent with its COMMIT: the next group waits for its end, and so gathers the
                // units that arrive meanwhile. Overlapping such groups measured dearer: smaller groups, more commits, as much work
                // in flight at once, and no faster (PostgreSQL, EC-P256 enrollments by 8 clients).
                if (_overlap && group.All(u => u.ExpectsSuccess)) await lane.Running;
                else
                {
                    await Task.WhenAny(committing.Task, lane.Running);
                    if (_overlap) next = (next + 1) % _lanes.Length;
                }
            }
        }
        finally
        {
            foreach (var lane in _lanes)
            {
                await lane.Running.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                await ForgetContextAsync(lane);
            }
        }
    }

    /// <summary>Commits the group; if that fails, each half is tried on its own, down to single units, so a bad
    /// unit costs its group about 2·log2(n) extra transactions and fails nothing but itself.</summary>
    /// <param name="retry">The group is (part of) one that failed: units that can write expecting success decide step by step now
    /// (see <see cref="WriteExpectingSuccessAsync{TFirst, T}"/>).</param>
    private async Task CommitAsync(Lane lane, IReadOnlyList<IUnit> group, TaskCompletionSource committing, bool retry = false)
    {
        // Where commands travel in batches (PostgreSQL, known once the first group has opened the writer's context).
        var expecting = !retry && _overlap && group.Any(u => u.ExpectsSuccess);
        try
        {
            await RunAsync(lane, group, committing, expecting);
        }
        catch (Exception e) when (group.Count > 1 || expecting)
        {
            logger.LogDebug(e, "A group of {Count} writes failed; retrying it in halves", group.Count);
            if (group.Count == 1)
            {
                await CommitAsync(lane, group, committing, retry: true);
                return;
            }
            var half = group.Count / 2;
            await CommitAsync(lane, group.Take(half).ToList(), committing, retry: true);
            await CommitAsync(lane, group.Skip(half).ToList(), committing, retry: true);
        }
        catch (Exception e)
        {
            group[0].Fail(e);
        }
    }

    /// <summary>The writer's context, kept with its connection open from one successful group to the next: SQLite then
    /// keeps the compiled statements (<see cref="DirectSql"/>) and the page cache of the connection that does nearly all
    /// the writing, where a pooled connection per group compiled every statement again and re-read pages another
    /// connection's commit had made stale. Any failure drops it: a retried unit runs on a fresh context and connection.
    /// One per lane (PostgreSQL uses both; see the class summary).</summary>
    private sealed class Lane
    {
        public AsyncServiceScope? Scope;
        public CertPortalDbContext? Db;
        /// <summary>The lane's group: its commit and, if it failed, its retries.</summary>
        public Task Running = Task.CompletedTask;
        /// <summary>The keys of the units of that group.</summary>
        public HashSet<string> Keys = [];
    }

    private readonly Lane[] _lanes = [.. Enumerable.Range(0, Lanes).Select(_ => new Lane())];
    /// <summary>Whether groups overlap: where other writers can run at the same time (PostgreSQL).</summary>
    private volatile bool _overlap;

    private async Task<CertPortalDbContext> ContextAsync(Lane lane)
    {
        if (lane.Db is not null) return lane.Db;
        lane.Scope = scopes.CreateAsyncScope();
        var db = lane.Db = lane.Scope.Value.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        // No savepoint around each SaveChanges (two more statements, on PostgreSQL two more round trips, per save): a
        // failed save fails the group, which is retried in halves on fresh transactions, never resumed.
        db.Database.AutoSavepointsEnabled = false;
        _overlap = db.HasConcurrentWriters();
        await db.Database.OpenConnectionAsync(CancellationToken.None);
        return db;
    }

    private static async Task ForgetContextAsync(Lane lane)
    {
        lane.Db = null;
        if (lane.Scope is { } scope)
        {
            lane.Scope = null;
            await scope.DisposeAsync();
        }
    }

    private async Task RunAsync(Lane lane, IReadOnlyList<IUnit> units, TaskCompletionSource committing, bool expecting)
    {
        try
        {
            await RunOnAsync(await ContextAsync(lane), units, committing, expecting);
        }
        catch
        {
            await ForgetContextAsync(lane);
            throw;
        }
    }

    private async Task RunOnAsync(CertPortalDbContext db, IReadOnlyList<IUnit> units, TaskCompletionSource committing, bool expecting)
    {
        await using var tx = await db.Database.BeginTransactionAsync(CancellationToken.None);
        // PostgreSQL: inserts and locks travel with the next command that needs an answer (DirectSql), so a group
        // costs a few round trips rather than several per unit.
        var deferring = DirectSql.BeginDeferring(db);
        // Only where nothing is waited for until the commit: on SQLite each statement runs at once, and the steps are as dear.
        expecting &= deferring;
        var results = new object?[units.Count];
        var expected = false;
        try
        {
            for (var i = 0; i < units.Count;)
            {
                if (expecting && units[i].ExpectsSuccess)
                {
                    // Its reads and writes held back with the others, its answer given only after the commit.
                    results[i] = await units[i].ApplyExpectingSuccessAsync(db);
                    expected = true;
                    i++;
                    continue;
                }
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
                for (; end < units.Count && units[end].TwoStep && !(expecting && units[end].ExpectsSuccess) &&
                       (end == i || !units[end].Keys.Any(keys.Contains)) && (!learning || units[end].LearnsKeys); end++)
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
            await db.SaveChangesAsync(CancellationToken.None);
            // From here the next group may run (PostgreSQL: on the other lane) while this one's commit becomes durable.
            committing.TrySetResult();
            // PostgreSQL: the commands still held back go with the COMMIT, in one round trip (DirectSql); where a refused spend is
            // to fail the group, not through EF Core's commit, which would log that as an error.
            if (expected) await DirectSql.CommitHeldBackAsync(db, CancellationToken.None);
            await tx.CommitAsync(CancellationToken.None);
        }
        finally
        {
            DirectSql.EndDeferring(db);
        }
        // What the units left tracked is committed; the next group starts with nothing to compare.
        db.ChangeTracker.Clear();
        Interlocked.Increment(ref _commits);
        Interlocked.Add(ref _units, units.Count);
        for (var i = 0; i < units.Count; i++) units[i].Complete(results[i]);
    }

    private interface IUnit
    {
        bool TwoStep { get; }
        IReadOnlyCollection<string> Keys { get; }
        bool LearnsKeys { get; }
        bool ExpectsSuccess { get; }
        IEnumerable<string> LearntKeys(object? first);
        Task<object?> FirstAsync(CertPortalDbContext db);
        Task<object?> ApplyAsync(CertPortalDbContext db, object? first);
        Task<object?> ApplyExpectingSuccessAsync(CertPortalDbContext db);
        void Complete(object? result);
        void Fail(Exception e);
    }

    private class Unit<T> : IUnit
    {
        // Where the caller resumes: see Answers.
        private readonly TaskCompletionSource<T> _done;
        private readonly Func<CertPortalDbContext, CancellationToken, Task<T>>? _apply;

        protected Unit(TaskCreationOptions answers) => _done = new(answers);

        public Unit(Func<CertPortalDbContext, CancellationToken, Task<T>> apply, TaskCreationOptions answers) : this(answers) => _apply = apply;

        public Task<T> Task => _done.Task;
        public virtual bool TwoStep => false;
        public virtual IReadOnlyCollection<string> Keys => [];
        public virtual bool LearnsKeys => false;
        public virtual bool ExpectsSuccess => false;
        public virtual IEnumerable<string> LearntKeys(object? first) => [];
        public virtual Task<object?> FirstAsync(CertPortalDbContext db) => System.Threading.Tasks.Task.FromResult<object?>(null);
        public virtual async Task<object?> ApplyAsync(CertPortalDbContext db, object? first) => await _apply!(db, CancellationToken.None);
        public virtual Task<object?> ApplyExpectingSuccessAsync(CertPortalDbContext db) => throw new InvalidOperationException("This unit decides step by step.");
        public void Complete(object? result) => _done.TrySetResult((T)result!);
        public void Fail(Exception e) => _done.TrySetException(e);
    }

    private sealed class TwoStepUnit<TFirst, T>(IReadOnlyCollection<string> keys, Func<CertPortalDbContext, CancellationToken, Task<TFirst>> first,
        Func<CertPortalDbContext, TFirst, CancellationToken, Task<T>> then, Func<TFirst, IEnumerable<string>>? learnt,
        Func<CertPortalDbContext, CancellationToken, Task<T>>? expectingSuccess, TaskCreationOptions answers) : Unit<T>(answers)
    {
        public override bool TwoStep => true;
        public override IReadOnlyCollection<string> Keys => keys;
        public override bool LearnsKeys => learnt is not null;
        public override bool ExpectsSuccess => expectingSuccess is not null;
        public override async Task<object?> ApplyExpectingSuccessAsync(CertPortalDbContext db) => await expectingSuccess!(db, CancellationToken.None);
        public override IEnumerable<string> LearntKeys(object? answers) => learnt is null ? [] : learnt((TFirst)answers!);
        public override async Task<object?> FirstAsync(CertPortalDbContext db) => await first(db, CancellationToken.None);
        public override async Task<object?> ApplyAsync(CertPortalDbContext db, object? answers) => await then(db, (TFirst)answers!, CancellationToken.None);
    }
}
