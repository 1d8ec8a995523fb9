using CertPortal.Authority;
using CertPortal.Data;

namespace CertPortal.Revocation;

/// <summary>Signs a fresh CRL for each CA when the current one is older than RefreshAfter (or missing),
/// so relying parties never see a CRL past its nextUpdate even when nothing is revoked (S/MIME BR 4.9.7).</summary>
public sealed class CrlRefreshWorker(IServiceScopeFactory scopes, CertPortalOptions options, TimeProvider time, ILogger<CrlRefreshWorker> logger)
    : BackgroundService
{
    public const string Actor = "system:crl-refresh";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Crl.CheckInterval, time);
        do
        {
            try
            {
                await RefreshDueAsync(stoppingToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                // Keep the worker alive: the next tick retries. The CRL still served stays valid until its nextUpdate.
                logger.LogError(e, "CRL refresh failed");
            }
        } while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    public async Task<int> RefreshDueAsync(CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var signer = scope.ServiceProvider.GetRequiredService<CrlSigner>();
        var signed = 0;
        foreach (var authority in new[] { CertificateAuthority.RootName, CertificateAuthority.IssuingName })
        {
            var now = time.GetUtcNow();
            var refreshAfter = authority == CertificateAuthority.RootName ? options.Crl.RootLifetime / 2 : options.Crl.RefreshAfter;
            var latest = await CrlSigner.LatestAsync(db, authority, ct);
            if (latest is not null && latest.ThisUpdate + refreshAfter > now) continue;
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            var crl = await signer.SignAsync(db, authority, now, Actor, ct);
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
            db.ChangeTracker.Clear();
            logger.LogInformation("Signed {Authority} CRL number {Number} with {Entries} entries, next update {NextUpdate}",
                authority, crl.Number, crl.EntryCount, crl.NextUpdate);
            signed++;
        }
        return signed;
    }
}
