namespace CertPortal.Escrow;

/// <summary>Erases the sealed shares of recovery requests that expired or were cancelled, so submitted
/// shares do not outlive their request even when no one touches the recovery API again; and the retry copies
/// of server-generated PKCS#12 files once their retry window has passed.</summary>
public sealed class RecoveryExpiryWorker(IServiceScopeFactory scopes, TimeProvider time, ILogger<RecoveryExpiryWorker> logger) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromMinutes(1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // A failed pass is retried at the next poll (or by the next recovery operation).
        await PollTimer.RunAsync(Interval, async ct =>
        {
            await using var scope = scopes.CreateAsyncScope();
            var erased = await scope.ServiceProvider.GetRequiredService<KeyRecovery>().PurgeExpiredSharesAsync(ct);
            if (erased > 0) logger.LogInformation("Erased {Count} submitted shares of expired or cancelled recovery requests", erased);
            var packages = await ServerKeyEnrollment.PurgeRetryPackagesAsync(
                scope.ServiceProvider.GetRequiredService<Data.CertPortalDbContext>(), time.GetUtcNow(), ct);
            if (packages > 0) logger.LogInformation("Erased {Count} retry copies of server-generated PKCS#12 files", packages);
        }, logger, "Erasing shares of expired recovery requests", stoppingToken);
    }
}
