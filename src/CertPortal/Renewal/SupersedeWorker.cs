using CertPortal.Auditing;
using CertPortal.Data;
using CertPortal.Revocation;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Renewal;

/// <summary>With <see cref="RenewalOptions.SupersedeAfter"/> set, revokes renewed certificates as <c>superseded</c> once
/// their successor is that old. Every node looks; the one holding the cluster-wide pass lock does it, so N nodes do not
/// all revoke the same list. Correctness does not rest on the lock (it can pass on mid-pass when a session ends): each
/// revocation is decided in its own transaction from the row as locked, and leaves a certificate revoked or placed on
/// hold since the list was read as it is (<see cref="RevocationService.SupersedeAsync"/>).</summary>
public sealed class SupersedeWorker(IServiceScopeFactory scopes, RenewalOptions options, TimeProvider time, ILogger<SupersedeWorker> logger)
    : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromMinutes(1);
    /// <summary>Held by the node carrying out a pass (<see cref="DatabaseLocks.TryHoldNamedAsync"/>).</summary>
    internal const string PassLock = "renewal-supersede";
    private const int BatchSize = 100;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Not tied to Renewal:Enabled: certificates renewed before renewal was switched off are still superseded as promised.
        if (options.SupersedeAfter is null) return;
        // Nothing is lost by a failed pass: the renewed certificates are found again on the next one.
        await PollTimer.RunAsync(Interval, RunOnceAsync, logger, "Superseding renewed certificates", stoppingToken);
    }

    /// <summary>One pass; returns how many certificates it revoked, 0 when another node holds the pass lock. Public so
    /// tests can drive it.</summary>
    public async Task<int> RunOnceAsync(CancellationToken ct)
    {
        if (options.SupersedeAfter is null) return 0;
        await using var scope = scopes.CreateAsyncScope();
        await using var pass = await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().TryHoldNamedAsync(PassLock, ct);
        if (pass is null) return 0;
        return await SupersedeAsync(await DueAsync(ct), ct);
    }

    /// <summary>The renewed certificates whose successor is old enough and valid, and which are neither revoked nor on hold, as
    /// read now.</summary>
    internal async Task<IReadOnlyList<string>> DueAsync(CancellationToken ct)
    {
        if (options.SupersedeAfter is not { } grace) return [];
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var now = time.GetUtcNow();
        var cutoff = now - grace;
        return await db.Certificates.AsNoTracking()
            // Only while the successor is itself valid: revoked or on hold (a lost device, a compromise of the new key), it
            // replaces nothing, and superseding the old one too would leave the holder without any valid ID. A released
            // successor makes the old one due again.
            .Where(n => n.RenewalOf != null && n.IssuedAt <= cutoff && n.RevokedAt == null)
            .Join(db.Certificates.Where(o => o.RevokedAt == null && o.NotAfter > now), n => n.RenewalOf, o => o.SerialNumber, (n, o) => o.SerialNumber)
            .Take(BatchSize).ToListAsync(ct);
    }

    /// <summary>Supersedes what <see cref="DueAsync"/> found; returns how many this call revoked, not counting those that were
    /// revoked (by another node) or placed on hold since.</summary>
    internal async Task<int> SupersedeAsync(IReadOnlyList<string> due, CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var revocation = scope.ServiceProvider.GetRequiredService<RevocationService>();
        var revoked = 0;
        foreach (var serial in due)
            if (await revocation.SupersedeAsync(serial, AuditActors.Renewal, ct)) revoked++;
        return revoked;
    }
}
