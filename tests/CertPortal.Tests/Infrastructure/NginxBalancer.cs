using System.Diagnostics;
using System.Globalization;

namespace CertPortal.Tests.Infrastructure;

/// <summary>Debian's nginx (nginx-light) as the load balancer in front of several nodes, started with its own
/// configuration in a temporary directory (no service manager), configured as README "Running several nodes"
/// shows: round robin; a node that refuses the connection or times out before the request was sent is skipped
/// (proxy_next_upstream). A POST that already reached a node is never sent to another one (nginx's default: no
/// <c>non_idempotent</c>): when that node dies, the client gets 502 and decides itself whether to repeat.</summary>
public sealed class NginxBalancer
{
    private readonly string _dir = TempDir.Create("nginx");
    private Process? _process;

    public int Port { get; } = FreePort.Next();
    public string BaseUrl => $"http://127.0.0.1:{Port}";

    public async Task StartAsync(IEnumerable<int> nodePorts)
    {
        if (!File.Exists(Nginx.Binary))
            throw new Xunit.Sdk.XunitException("nginx is not installed: run the README's test command (it installs nginx-light).");
        var servers = string.Concat(nodePorts.Select(p => $"    server 127.0.0.1:{p.ToString(CultureInfo.InvariantCulture)} max_fails=1 fail_timeout=5s;\n"));
        Directory.CreateDirectory(Path.Combine(_dir, "tmp"));
        // master_process off: one process, the one started here, so killing it leaves no worker behind.
        File.WriteAllText(Path.Combine(_dir, "nginx.conf"), $$"""
            daemon off;
            master_process off;
            pid {{_dir}}/nginx.pid;
            error_log {{_dir}}/error.log warn;
            events { worker_connections 1024; }
            http {
              access_log off;
              client_body_temp_path {{_dir}}/tmp/body;
              proxy_temp_path {{_dir}}/tmp/proxy;
              fastcgi_temp_path {{_dir}}/tmp/fastcgi;
              uwsgi_temp_path {{_dir}}/tmp/uwsgi;
              scgi_temp_path {{_dir}}/tmp/scgi;
              upstream certportal {
            {{servers}}  }
              server {
                listen 127.0.0.1:{{Port.ToString(CultureInfo.InvariantCulture)}};
                client_max_body_size 256k;
                location / {
                  proxy_pass http://certportal;
                  proxy_set_header Host $http_host;
                  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                  proxy_connect_timeout 2s;
                  proxy_next_upstream error timeout http_502 http_503;
                }
              }
            }
            """);
        var psi = new ProcessStartInfo(Nginx.Binary) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-c", Path.Combine(_dir, "nginx.conf"), "-p", _dir, "-e", Path.Combine(_dir, "error.log") }) psi.ArgumentList.Add(a);
        _process = HelperProcesses.Start(psi);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        for (var i = 0; i < 100; i++)
        {
            if (_process.HasExited)
            {
                HelperProcesses.Forget(_process);
                throw new InvalidOperationException($"nginx exited with {_process.ExitCode}: {await _process.StandardError.ReadToEndAsync()}");
            }
            try
            {
                await http.GetAsync(BaseUrl + "/healthz");
                return;
            }
            catch (HttpRequestException) { await Task.Delay(100); }
        }
        throw new TimeoutException("nginx did not start");
    }

    /// <summary>Stops it and frees its port (and files).</summary>
    public async Task StopAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill();
            await _process.WaitForExitAsync();
        }
        if (_process is not null) HelperProcesses.Forget(_process);
        _process?.Dispose();
        TempDir.Delete(_dir);
    }
}
