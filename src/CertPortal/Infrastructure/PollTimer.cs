namespace CertPortal;

/// <summary>The cadence of a background worker's polls. How often a worker looks for work is latency, measured
/// on the wall clock; what it finds due is decided with the injected <see cref="TimeProvider"/>.
/// <para>Ticking on the injected clock breaks under a test's <c>FakeTimeProvider</c>: a jump fires every period
/// in between, one after another, with the clock set to each intermediate time (a one-minute poll through a
/// 30-day jump is 43,200 passes, each seeing a time that is not now), so the test waits for a storm of passes
/// that race the ones it drives itself. On the wall clock a jump costs nothing and the next pass sees the new
/// time.</para></summary>
public static partial class PollTimer
{
    public static PeriodicTimer Create(TimeSpan interval) => new(interval);

    /// <summary>A worker's loop: <paramref name="pass"/> now and then every <paramref name="interval"/> until the worker
    /// is stopped. A failed pass is logged and the worker stays alive; what a pass does is durable in the database, so the
    /// next pass finds whatever the failed one left. A stop, between passes or in one, ends the loop quietly.</summary>
    public static async Task RunAsync(TimeSpan interval, Func<CancellationToken, Task> pass, ILogger logger, string worker,
        CancellationToken stoppingToken)
    {
        using var timer = Create(interval);
        try
        {
            do
            {
                try
                {
                    await pass(stoppingToken);
                }
                catch (Exception e) when (FailedPass(e, stoppingToken))
                {
                    PassFailed(logger, e, worker);
                }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopped. A worker ends by returning, never by letting the cancellation escape ExecuteAsync: .NET's host takes a
            // worker whose task ends cancelled for a failed one unless the host itself is shutting down, and by default
            // (BackgroundServiceExceptionBehavior.StopHost) stops the whole application for it, so a worker stopped on its own
            // (its StopAsync) took every other with it.
        }
    }

    /// <summary>Whether <paramref name="e"/>, thrown by a worker's pass, is a failed pass (logged; the worker polls on) rather
    /// than the worker's stop (which ends its loop quietly). A cancellation is the stop only when the worker's own token asked
    /// for it: one from a library's or a driver's timeout, or from a deadline of the pass's own, is a failure like any other,
    /// and escaping ExecuteAsync it would stop the whole host (see <see cref="RunAsync"/>).</summary>
    public static bool FailedPass(Exception e, CancellationToken stoppingToken) =>
        e is not OperationCanceledException || !stoppingToken.IsCancellationRequested;

    [LoggerMessage(Level = LogLevel.Error, Message = "{Worker} pass failed; the next poll tries again")]
    private static partial void PassFailed(ILogger logger, Exception e, string worker);
}
