using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;

namespace CertPortal.Tests.Infrastructure;

/// <summary>The built service (CertPortal.dll beside the tests) as a process of its own, configured by environment
/// variables as an operator would run a node: so it can be started several times on one database, killed with
/// SIGKILL, or watched refusing to start.</summary>
public sealed class CertPortalNode : IAsyncDisposable
{
    public const string AdminKey = CertPortalApp.AdminKey;
    public const string Passphrase = "test-ca-passphrase-0123";

    private readonly Dictionary<string, string> _settings;
    private readonly ConcurrentQueue<string> _output = new();
    private Process? _process;

    /// <param name="settings">CertPortal settings (key: path below "CertPortal:", e.g. "Database:Provider").</param>
    public CertPortalNode(string name, IDictionary<string, string> settings, string? dataDirectory = null, int? port = null)
    {
        Name = name;
        _settings = new Dictionary<string, string>(settings);
        DataDirectory = dataDirectory ?? TempDir.Create("certportal-node");
        Port = port ?? FreePort.Next();
    }

    public string Name { get; }
    public string DataDirectory { get; }
    public int Port { get; }
    public string BaseUrl => $"http://127.0.0.1:{Port}";
    public string Output => string.Join('\n', _output);
    /// <summary>Environment variables for the process besides the CertPortal settings (e.g. the runtime's own).</summary>
    public Dictionary<string, string> Environment { get; } = [];
    public bool IsRunning => _process is { HasExited: false };
    public int ProcessId => _process!.Id;

    public HttpClient Client(bool admin = false)
    {
        var client = new HttpClient { BaseAddress = new Uri(BaseUrl), Timeout = TimeSpan.FromSeconds(60) };
        if (admin) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
        return client;
    }

    public void Start()
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "CertPortal.dll");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = DataDirectory,
        };
        psi.ArgumentList.Add(dll);
        psi.Environment["ASPNETCORE_URLS"] = BaseUrl;
        psi.Environment["DOTNET_ENVIRONMENT"] = "Production";
        psi.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        psi.Environment["Logging__LogLevel__Default"] = "Warning";
        psi.Environment["CertPortal__DataDirectory"] = DataDirectory;
        psi.Environment["CertPortal__AdminApiKey"] = AdminKey;
        psi.Environment["CertPortal__Ca__KeyPassphrase"] = Passphrase;
        // Smaller CA keys than the defaults keep node start-up quick on a loaded 2-core machine.
        psi.Environment["CertPortal__Ca__RootKeyAlgorithm"] = "EC-P384";
        psi.Environment["CertPortal__Ca__IssuingKeyAlgorithm"] = "EC-P256";
        foreach (var (k, v) in _settings) psi.Environment["CertPortal__" + k.Replace(":", "__")] = v;
        foreach (var (k, v) in Environment) psi.Environment[k] = v;
        _output.Clear();
        _process = HelperProcesses.Start(psi);
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) _output.Enqueue(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) _output.Enqueue(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>Until /healthz answers 200; fails with the node's output when it exits first.</summary>
    /// <summary>A node started and ready to serve; disposed again if it does not get there.</summary>
    public static async Task<CertPortalNode> StartedAsync(string name, IDictionary<string, string> settings)
    {
        var node = new CertPortalNode(name, settings);
        try
        {
            node.Start();
            await node.WaitReadyAsync();
            return node;
        }
        catch
        {
            await node.DisposeAsync();
            throw;
        }
    }

    public async Task WaitReadyAsync(int seconds = 120)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < deadline)
        {
            if (_process is null || _process.HasExited)
                throw new Xunit.Sdk.XunitException($"node {Name} exited with {_process?.ExitCode}:\n{Output}");
            try
            {
                if ((await http.GetAsync(BaseUrl + "/healthz")).StatusCode == HttpStatusCode.OK)
                {
                    // Answered by whoever listens on the port: another test's server that took it (another test run on this machine)
                    // would answer too, and the test would go on against it, never this node.
                    var listener = ListenerOf(Port);
                    if (listener is not null && OwnsSocket(_process.Id, listener)) return;
                    if (listener is not null)
                        throw new Xunit.Sdk.XunitException($"node {Name}: port {Port} answers, but another process than this node ({_process.Id}) listens on it:\n{Output}");
                }
            }
            catch (HttpRequestException) { /* not listening yet */ }
            catch (TaskCanceledException) { /* busy starting */ }
            await Task.Delay(200);
        }
        throw new TimeoutException($"node {Name} did not become ready in {seconds} s:\n{Output}");
    }

    /// <summary>The inode of the socket listening on 127.0.0.1:<paramref name="port"/> (Linux, /proc/net/tcp), or null.</summary>
    private static string? ListenerOf(int port)
    {
        var local = $"0100007F:{port:X4}";
        return File.ReadLines("/proc/net/tcp").Skip(1).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f.Length > 9 && f[1] == local && f[3] == "0A").Select(f => f[9]).FirstOrDefault();
    }

    /// <summary>Whether process <paramref name="pid"/> holds the socket with this inode among its file descriptors.</summary>
    private static bool OwnsSocket(int pid, string inode)
    {
        try
        {
            return Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd").Any(fd => new FileInfo(fd).LinkTarget == $"socket:[{inode}]");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false; // the process is gone
        }
    }

    /// <summary>For a node expected to refuse to start: its exit code once it has exited.</summary>
    public async Task<int> WaitForExitAsync(int seconds = 120)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        await _process!.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    /// <summary>kill -STOP: the node frozen, still holding its files, its locks and its port, doing nothing.</summary>
    public void Freeze() => Tool.Run("kill", ["-STOP", _process!.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]).EnsureSuccess();

    /// <summary>kill -CONT: the frozen node goes on.</summary>
    public void Thaw() => Tool.Run("kill", ["-CONT", _process!.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]).EnsureSuccess();

    /// <summary>kill -9: no shutdown, no flush, as a crash or a power cut.</summary>
    public void Kill()
    {
        if (_process is { HasExited: false }) _process.Kill(entireProcessTree: true);
        _process?.WaitForExit(10_000);
        if (_process is not null) HelperProcesses.Forget(_process);
    }

    public async ValueTask DisposeAsync()
    {
        Kill();
        _process?.Dispose();
        await Task.Yield();
        TempDir.Delete(DataDirectory);
    }
}
