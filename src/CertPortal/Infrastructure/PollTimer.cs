namespace CertPortal;

/// <summary>The cadence of a background worker's polls. How often a worker looks for work is latency, measured
/// on the wall clock; what it finds due is decided with the injected <see cref="TimeProvider"/>.
/// <para>Ticking on the injected clock breaks under a test's <c>FakeTimeProvider</c>: a jump fires every period
/// in between, one after another, with the clock set to each intermediate time (a one-minute poll through a
/// 30-day jump is 43,200 passes, each seeing a time that is not now), so the test waits for a storm of passes
/// that race the ones it drives itself. On the wall clock a jump costs nothing and the next pass sees the new
/// time.</para></summary>
public static class PollTimer
{
    public static PeriodicTimer Create(TimeSpan interval) => new(interval);
}
