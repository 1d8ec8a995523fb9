using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Gal;

/// <summary>Asked before every LDAP write that reconciles an outbox entry: it lets the write go only while this node
/// certainly holds the entry's lease for one more operation (<see cref="DirectoryOptions.TimeoutSeconds"/>). A write sent then
/// ends, or is given up by the client, before another node can claim the entry, so two nodes never write one entry at once
/// and a slower node cannot put back a certificate another has just removed as revoked.</summary>
/// <param name="enterEntry">Asked once a person entry has been read, with every mailbox it answers to (see
/// <see cref="EnterPersonEntryAsync"/>); null where the lease's key alone names the entry.</param>
public sealed class DirectoryWriteFence(Func<bool> mayWrite, string entry,
    Func<IReadOnlyCollection<string>, CancellationToken, Task>? enterEntry = null)
{
    /// <exception cref="DirectoryClaimLostException">The write must not be sent.</exception>
    public void CheckBeforeWrite()
    {
        if (!mayWrite()) throw new DirectoryClaimLostException(entry);
    }

    /// <summary>Called after the person entry is read and before the database is read or anything written, with the mail values
    /// it holds. Leases are taken per mailbox, before the entry is known; an entry with aliases is reached through each of them,
    /// so only now can the outbox see whether another node is reconciling this entry through another mailbox.</summary>
    /// <exception cref="DirectoryEntryHeldElsewhereException">Another node holds the entry: leave it alone.</exception>
    public Task EnterPersonEntryAsync(IReadOnlyCollection<string> mailboxes, CancellationToken ct) =>
        enterEntry is null ? Task.CompletedTask : enterEntry(mailboxes, ct);
}

/// <summary>This node's lease on the outbox rows of one pass, kept alive while the pass runs. A reconciliation takes as
/// many LDAP operations as the entry has certificates to change (each bounded by TimeoutSeconds, but not their sum), so
/// a fixed lease taken at the claim could end in the middle of an entry, and another node would then reconcile it at the
/// same time. The lease is renewed every quarter of <see cref="DirectoryOptions.ClaimLease"/> from a database context of
/// its own (the pass's is busy), under the claim's lock, and only on rows still leased to this node: a row another node
/// took over stays lost, and <see cref="Holds"/> says so before the next write.</summary>
internal sealed partial class DirectoryOutboxLease : IAsyncDisposable
{
    private sealed record Held(HashSet<long> Ids, DateTimeOffset Until);

    private readonly IServiceScopeFactory _scopes;
    private readonly string _node;
    private readonly long[] _ids;
    private readonly TimeSpan _lease;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _renewals;
    private volatile Held _held;

    /// <param name="until">When the lease the claim wrote ends, on this node's clock (<see cref="LeaseTime.Own"/>).</param>
    public DirectoryOutboxLease(IServiceScopeFactory scopes, string node, IReadOnlyCollection<long> ids, DateTimeOffset until,
        TimeSpan lease, TimeProvider time, ILogger logger)
    {
        _scopes = scopes;
        _node = node;
        _ids = [.. ids];
        _lease = lease;
        _time = time;
        _logger = logger;
        _held = new Held([.. ids], until);
        _renewals = RenewPeriodicallyAsync();
    }

    /// <summary>True while every one of <paramref name="ids"/> is leased to this node for at least <paramref name="margin"/> more,
    /// as of the last renewal that succeeded, measured on this node's clock from a reading taken before the database's (so the
    /// lease the database holds ends no earlier).</summary>
    public bool Holds(IEnumerable<long> ids, TimeSpan margin)
    {
        var held = _held;
        return _time.GetUtcNow() + margin <= held.Until && ids.All(held.Ids.Contains);
    }

    private async Task RenewPeriodicallyAsync()
    {
        // The cadence is wall-clock latency (see PollTimer); the lease's end is on the lease clock, as the claim's is.
        using var timer = PollTimer.Create(_lease / 4);
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
            {
                try
                {
                    await RenewAsync(_stop.Token);
                }
                catch (Exception e) when (PollTimer.FailedPass(e, _stop.Token))
                {
                    // Not renewed: Holds turns false when the last renewal's lease comes within an operation of its end, and the
                    // pass stops writing; the next tick tries again.
                    RenewalFailed(_logger, e);
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            // The pass is over.
        }
    }

    private async Task RenewAsync(CancellationToken ct)
    {
        using var scope = _scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        // The claim's lock: a renewal and another node's claim of the same rows are ordered, never interleaved.
        await db.LockNamedAsync(DirectoryOutbox.ClaimLockName, ct);
        // Written on the database's clock, as the claim's; held, for Holds, on this node's (see LeaseClock).
        var clock = await db.ReadLeaseClockAsync(_time, ct);
        var leaseEnd = clock.Shared + _lease;
        var mine = db.DirectoryPublications.Where(p => _ids.Contains(p.Id) && p.LeasedBy == _node && p.CompletedAt == null);
        await mine.ExecuteUpdateAsync(s => s.SetProperty(p => p.LeaseExpiresAt, leaseEnd), ct);
        var held = await mine.Select(p => p.Id).ToListAsync(ct);
        await tx.CommitAsync(ct);
        _held = new Held([.. held], clock.Own + _lease);
    }

    public async ValueTask DisposeAsync()
    {
        // A write still running after its pass gave up (an LDAP call does not stop at cancellation) finds nothing held.
        _held = new Held([], DateTimeOffset.MinValue);
        await _stop.CancelAsync();
        await _renewals;
        _stop.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Renewing the directory outbox lease failed; writes stop when it runs out")]
    private static partial void RenewalFailed(ILogger logger, Exception e);
}
