using System.Text.Json;

namespace CertPortal.Tests.FastPath;

/// <summary>The runtime settings the service was measured with (CertPortal.csproj says why for each) are in the
/// runtimeconfig.json that <c>dotnet CertPortal.dll</c> reads: one lost from the build would change the service's memory
/// or CPU without any test noticing. The thread pool's spin limit is here too: 0 (session 10, set under heavy load) made
/// every idle worker sleep at once, and on a nearly quiet 2-core machine each answer and next request then waited for a
/// futex wake-up of an idle vCPU; 70 rounds, whose later ones are each a sched_yield, cost more CPU than 10 since this
/// VM's system calls became dearer (CertPortal.csproj, docs/benchmark-history.md "the cores' idle time").</summary>
public sealed class RuntimeSettingsTests
{
    [Theory]
    [InlineData("System.GC.Server", "true")]
    [InlineData("System.GC.DynamicAdaptationMode", "1")]
    [InlineData("System.GC.ConserveMemory", "9")]
    [InlineData("System.GC.DGen0GrowthMaxFactor", "1000")]
    [InlineData("System.Runtime.TieredPGO", "false")]
    [InlineData("System.Runtime.TieredCompilation.CallCountingDelayMs", "0")]
    [InlineData("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit", "10")]
    public void The_service_runs_with_the_measured_setting(string name, string value)
    {
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "CertPortal.runtimeconfig.json")));
        var properties = config.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");
        Assert.True(properties.TryGetProperty(name, out var actual), $"{name} is missing from CertPortal.runtimeconfig.json");
        Assert.Equal(value, actual.ToString(), ignoreCase: true);
    }
}
