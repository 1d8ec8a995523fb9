namespace CertPortal.Tests.Infrastructure;

/// <summary>The system clock moved by <see cref="Offset"/>, which the test may change at any time (FakeTimeProvider cannot go
/// back, and stands still): an NTP correction after a clock ran fast, or a node whose clock is off from the others'. Timers and
/// timestamps are the system's.</summary>
public sealed class SteppedClock : TimeProvider
{
    public TimeSpan Offset { get; set; }

    public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + Offset;
}
