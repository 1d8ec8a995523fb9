using System.Diagnostics;

namespace CertPortal.Tests.Infrastructure;

/// <summary>Polls a condition that another thread or process makes true, failing with <c>failure()</c> (evaluated only then,
/// so it can describe the state at that moment) when it is still false after <c>within</c> (30 s unless given).</summary>
public static class Eventually
{
    public static async Task TrueAsync(Func<bool> condition, Func<string> failure, TimeSpan? within = null)
    {
        var limit = within ?? TimeSpan.FromSeconds(30);
        var elapsed = Stopwatch.StartNew();
        while (!condition())
        {
            if (elapsed.Elapsed > limit) Assert.Fail(failure());
            await Task.Delay(20);
        }
    }
}
