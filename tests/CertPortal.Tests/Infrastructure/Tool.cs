using System.Diagnostics;

namespace CertPortal.Tests.Infrastructure;

/// <summary>Runs a real program (openssl, certutil, gpgsm, ...) and captures what it says.</summary>
public static class Tool
{
    public sealed record Result(string Command, int ExitCode, string Stdout, string Stderr)
    {
        public string Output => Stdout + Stderr;

        public Result EnsureSuccess()
        {
            if (ExitCode != 0) throw new Xunit.Sdk.XunitException($"`{Command}` exited {ExitCode}:\n{Stdout}\n{Stderr}");
            return this;
        }
    }

    public static Result Run(string program, IEnumerable<string> args, string? stdin = null, string? workingDirectory = null,
        IDictionary<string, string>? env = null, int timeoutSeconds = 60)
    {
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null) foreach (var (k, v) in env) psi.Environment[k] = v;
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {program}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null) p.StandardInput.Write(stdin);
        p.StandardInput.Close();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', args)} did not finish in {timeoutSeconds} s");
        }
        p.WaitForExit();
        return new Result($"{program} {string.Join(' ', args)}", p.ExitCode, stdout.Result, stderr.Result);
    }

    public static bool Exists(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Any(d => File.Exists(Path.Combine(d, program)));

    /// <summary>Oracle tests need the real program; the test command installs it. Missing means a broken setup, not a skip.</summary>
    public static void Require(string program, string debianPackage)
    {
        if (!Exists(program))
            throw new Xunit.Sdk.XunitException($"{program} is not installed: run the README's test command (it installs {debianPackage}).");
    }
}

/// <summary>A temporary working directory for one tool run.</summary>
public sealed class ToolDir(string prefix) : IDisposable
{
    public string Path { get; } = TempDir.Create(prefix);
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public string Write(string name, string text) { System.IO.File.WriteAllText(File(name), text); return File(name); }
    public string Write(string name, byte[] bytes) { System.IO.File.WriteAllBytes(File(name), bytes); return File(name); }
    public void Dispose() => TempDir.Delete(Path);
}
