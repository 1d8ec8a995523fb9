using System.Diagnostics;
using System.Globalization;

namespace CertPortal.Tests.Infrastructure;

/// <summary>The servers the tests run as child processes (slapd, PostgreSQL, nginx, service nodes). Each
/// runs in its own process group (setsid), so killing the group stops whatever it forked too, and has a
/// pid file under a per-user temporary directory while it runs. A test host that crashes or is killed by
/// a timeout cannot stop its servers; the next test host reaps them when it starts
/// (<see cref="ReapOrphans"/>, from <see cref="TestProcessSetup"/>). Test hosts of other runs on the same
/// machine are left alone: only groups whose test host is gone are killed.</summary>
internal static class HelperProcesses
{
    private static readonly string PidDirectory =
        Path.Combine(Path.GetTempPath(), "certportal-tests-" + Environment.UserName, "helper-pids");

    /// <summary>Starts <paramref name="psi"/> as the leader of a new process group and records it.</summary>
    public static Process Start(ProcessStartInfo psi)
    {
        // setsid(1) makes a new session and process group and then execs the program (no fork: a child
        // of this process is never a group leader already), so the process returned is the server itself
        // and its pid is the group id.
        psi.ArgumentList.Insert(0, psi.FileName);
        psi.FileName = "setsid";
        var process = Process.Start(psi)!;
        Directory.CreateDirectory(PidDirectory);
        File.WriteAllText(PidFile(process.Id), string.Join(' ', Environment.ProcessId, StartTime(Environment.ProcessId), process.Id, StartTime(process.Id)));
        return process;
    }

    /// <summary>After the process has exited (or been stopped): drops its pid file.</summary>
    public static void Forget(Process process) => File.Delete(PidFile(process.Id));

    /// <summary>Kills the process groups left by test hosts that are no longer running.</summary>
    public static void ReapOrphans()
    {
        if (!Directory.Exists(PidDirectory)) return;
        foreach (var file in Directory.GetFiles(PidDirectory, "*.pid"))
        {
            var fields = File.ReadAllText(file).Split(' ');
            if (fields.Length != 4 || !int.TryParse(fields[0], CultureInfo.InvariantCulture, out var hostPid)
                || !int.TryParse(fields[2], CultureInfo.InvariantCulture, out var pid))
            {
                File.Delete(file);
                continue;
            }
            // Start times guard against reused pids: a pid alone may by now name an unrelated process.
            if (StartTime(hostPid) == fields[1]) continue; // its test host (this one or another run) is still going
            if (StartTime(pid) == fields[3]) Tool.Run("kill", ["-KILL", "--", "-" + pid.ToString(CultureInfo.InvariantCulture)]);
            File.Delete(file);
        }
    }

    internal static string PidFile(int pid) => Path.Combine(PidDirectory, pid.ToString(CultureInfo.InvariantCulture) + ".pid");

    /// <summary>The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or "" when
    /// no such process runs.</summary>
    internal static string StartTime(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            // The command name (field 2) is in parentheses and may contain spaces: count from after it.
            return stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[19];
        }
        catch (IOException)
        {
            return "";
        }
        catch (UnauthorizedAccessException)
        {
            return "";
        }
    }
}
