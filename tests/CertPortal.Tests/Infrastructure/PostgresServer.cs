using System.Globalization;
using System.Diagnostics;

namespace CertPortal.Tests.Infrastructure;

/// <summary>A private PostgreSQL cluster (Debian's `postgresql` package, never its system service) in a
/// temporary directory on a free loopback port. PostgreSQL refuses to run as root, so when the tests
/// run as root (as CI does) the server runs as the package's `postgres` user.</summary>
public sealed class PostgresServer : IAsyncLifetime
{
    private readonly string _dir = TempDir.Create("postgres");
    private Process? _process;
    public int Port { get; private set; } = FreePort.Next();
    public string ConnectionString(string database) => $"Host=127.0.0.1;Port={Port};Username=postgres;Database={database}";

    private static string BinDir =>
        Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(d => File.Exists(Path.Combine(d, "initdb")))
                .OrderDescending().FirstOrDefault() ?? ""
            : "";

    private static bool IsRoot => Environment.UserName == "root";

    public async Task InitializeAsync()
    {
        if (BinDir.Length == 0)
            throw new Xunit.Sdk.XunitException("PostgreSQL is not installed: run the README's test command (it installs postgresql).");
        var data = Path.Combine(_dir, "data");
        if (IsRoot) Tool.Run("chown", ["-R", "postgres:postgres", _dir]).EnsureSuccess();
        Run("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"]).EnsureSuccess();
        Port = (await FreePort.StartAsync([Port], ports => StartAsync(data, ports[0])))[0];
    }

    private async Task StartAsync(string data, int port)
    {
        Port = port;
        var psi = new ProcessStartInfo(IsRoot ? "runuser" : Path.Combine(BinDir, "postgres"))
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        var args = new List<string>();
        if (IsRoot) args.AddRange(["-u", "postgres", "--", Path.Combine(BinDir, "postgres")]);
        // fsync off: a throwaway cluster; durability of the product is not what these tests measure.
        args.AddRange(["-D", data, "-p", Port.ToString(CultureInfo.InvariantCulture), "-k", _dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"]);
        foreach (var a in args) psi.ArgumentList.Add(a);
        _process = HelperProcesses.Start(psi);
        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) output.Enqueue(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        for (var i = 0; i < 200; i++)
        {
            // Exited first: with "could not bind ... Address already in use" when the port was taken (FreePort retries).
            if (_process.HasExited)
            {
                HelperProcesses.Forget(_process);
                throw new InvalidOperationException($"postgres exited with {_process.ExitCode}: {string.Join('\n', output)}");
            }
            if (Run("pg_isready", ["-h", "127.0.0.1", "-p", Port.ToString(CultureInfo.InvariantCulture)]).ExitCode == 0) return;
            await Task.Delay(100);
        }
        throw new TimeoutException("PostgreSQL did not start");
    }

    private Tool.Result Run(string program, string[] args) =>
        IsRoot ? Tool.Run("runuser", ["-u", "postgres", "--", Path.Combine(BinDir, program), .. args])
               : Tool.Run(Path.Combine(BinDir, program), args);

    public async Task DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            Run("pg_ctl", ["stop", "-D", Path.Combine(_dir, "data"), "-m", "fast", "-w"]);
            if (!_process.WaitForExit(10_000)) _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
            HelperProcesses.Forget(_process);
        }
        TempDir.Delete(_dir);
    }
}
