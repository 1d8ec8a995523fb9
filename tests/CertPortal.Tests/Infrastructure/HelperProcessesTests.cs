using System.Diagnostics;
using System.Globalization;

namespace CertPortal.Tests.Infrastructure;

/// <summary>Servers left by a crashed test host are reaped with everything they forked; servers of a
/// test host that is still running are not.</summary>
public sealed class HelperProcessesTests
{
    [Fact]
    public void A_crashed_hosts_server_group_is_reaped_and_a_running_hosts_is_not()
    {
        var orphan = StartShellWithChild(out var orphanChild);
        var alive = StartShellWithChild(out var aliveChild);
        try
        {
            Assert.Equal(orphan.Id, ProcessGroupOf(orphan.Id)); // its own group...
            Assert.Equal(orphan.Id, ProcessGroupOf(orphanChild)); // ...holding what it forked
            // Make the orphan's pid file name a test host that has exited, as after a crash.
            var file = HelperProcesses.PidFile(orphan.Id);
            var fields = File.ReadAllText(file).Split(' ');
            File.WriteAllText(file, string.Join(' ', LastExitedPid(), "1", fields[2], fields[3]));

            HelperProcesses.ReapOrphans();

            Assert.True(orphan.WaitForExit(10_000));
            Assert.True(WaitGone(orphanChild), "the server's child survived");
            Assert.False(File.Exists(file));
            Assert.False(alive.HasExited);
            Assert.False(WaitGone(aliveChild, milliseconds: 200));
            Assert.True(File.Exists(HelperProcesses.PidFile(alive.Id)));
        }
        finally
        {
            foreach (var p in new[] { orphan, alive })
            {
                if (!p.HasExited) Tool.Run("kill", ["-KILL", "--", "-" + p.Id.ToString(CultureInfo.InvariantCulture)]);
                p.WaitForExit(10_000);
                HelperProcesses.Forget(p);
                p.Dispose();
            }
        }
    }

    private static int LastExitedPid()
    {
        using var p = Process.Start("true")!;
        p.WaitForExit();
        return p.Id;
    }

    /// <summary>A shell that forks a sleep and waits: the shape of runuser starting postgres.</summary>
    private static Process StartShellWithChild(out int childPid)
    {
        var psi = new ProcessStartInfo("sh") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { "-c", "sleep 300 & echo $!; wait" }) psi.ArgumentList.Add(a);
        var process = HelperProcesses.Start(psi);
        childPid = int.Parse(process.StandardOutput.ReadLine()!, CultureInfo.InvariantCulture);
        return process;
    }

    private static int ProcessGroupOf(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        return int.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[2], CultureInfo.InvariantCulture);
    }

    /// <summary>Gone, or a zombie (killed, waiting for a parent that may be a container's init that never reaps).</summary>
    private static bool WaitGone(int pid, int milliseconds = 10_000)
    {
        var deadline = Environment.TickCount64 + milliseconds;
        do
        {
            try
            {
                var stat = File.ReadAllText($"/proc/{pid}/stat");
                if (stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z')) return true;
            }
            catch (IOException) { return true; }
            Thread.Sleep(50);
        }
        while (Environment.TickCount64 < deadline);
        return false;
    }
}
