using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Revocation;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Renewal;

/// <summary>With <see cref="RenewalOptions.SupersedeAfter"/> set, revokes renewed certificates as <c>superseded</c> once
/// their successor is that old. Any node may do it: revoking an already revoked certificate changes nothing.</summary>
public sealed class SupersedeWorker(IServiceScopeFactory scopes, RenewalOptions options, TimeProvider time, ILogger<SupersedeWorker> logger)
    : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromMinutes(1);
    private const int BatchSize = 100;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Enabled || options.SupersedeAfter is null) return;
        // Nothing is lost by a failed pass: the renewed certificates are found again on the next one.
        await PollTimer.RunAsync(Interval, RunOnceAsync, logger, "Superseding renewed certificates", stoppingToken);
    }

    /// <summary>One pass; returns how many certificates it revoked. Public so tests can drive it.</summary>
    public async Task<int> RunOnceAsync(CancellationToken ct)
    {
        if (options.SupersedeAfter is not { } grace) return 0;
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var revocation = scope.ServiceProvider.GetRequiredService<RevocationService>();
        var now = time.GetUtcNow();
        var cutoff = now - grace;
        var due = await db.Certificates.AsNoTracking()
            .Where(n => n.RenewalOf != null && n.IssuedAt <= cutoff)
            .Join(db.Certificates.Where(o => o.RevokedAt == null && o.NotAfter > now), n => n.RenewalOf, o => o.SerialNumber, (n, o) => o.SerialNumber)
            .Take(BatchSize).ToListAsync(ct);
        var revoked = 0;
        foreach (var serial in due)
        {
            var outcome = await revocation.RevokeAsync(serial, new RevokeRequest(RevocationReason.Superseded.ToRfcName()), AuditActors.Renewal, ct);
            if (outcome.Failure is { } f) logger.LogWarning("Could not supersede renewed certificate {Serial}: {Problem}", serial, f.Detail);
            else revoked++;
        }
        return revoked;
    }
}
