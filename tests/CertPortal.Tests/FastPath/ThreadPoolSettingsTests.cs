using System.Text.Json;

namespace CertPortal.Tests.FastPath;

/// <summary>The service's runtime settings for the thread pool, as the build writes them beside CertPortal.dll (the file the
/// service starts with; this test process runs on its own).</summary>
public sealed class ThreadPoolSettingsTests
{
    [Fact]
    public void Idle_workers_spin_before_they_sleep()
    {
        // 0 made every worker sleep at once: on a nearly quiet 2-core machine each answer and each next request then waited for
        // a futex wake-up of an idle vCPU, and 8 clients got 12 % fewer enrollments per second (CertPortal.csproj, README).
        var path = Path.Combine(Path.GetDirectoryName(typeof(Program).Assembly.Location)!, "CertPortal.runtimeconfig.json");
        using var config = JsonDocument.Parse(File.ReadAllText(path));
        var properties = config.RootElement.GetProperty("runtimeOptions").GetProperty("configProperties");
        Assert.Equal(70, properties.GetProperty("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit").GetInt32());
    }
}
