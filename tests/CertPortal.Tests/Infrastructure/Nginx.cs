using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace CertPortal.Tests.Infrastructure;

/// <summary>A private nginx (Debian's, started with its own config; never the system service) terminating TLS
/// for <see cref="HostName"/> with a server certificate from a throwaway test CA, and proxying to a backend the
/// way an organisation would deploy CertPortal: X-Forwarded-For and X-Forwarded-Proto set, and connecting to the
/// backend from <see cref="ProxyAddress"/> (127.0.0.3), so the backend can tell nginx's address from the
/// browser's (127.0.0.1) although both are on this machine.</summary>
public sealed class Nginx(string hostName, int backendPort) : IDisposable
{
    public const string ProxyAddress = "127.0.0.3";
    public const string Binary = "/usr/sbin/nginx";
    private readonly string _dir = TempDir.Create("nginx");
    private Process? _process;

    public string HostName { get; } = hostName;
    // Known before nginx starts: the service's PortalUrl names it. No retry on a lost port race here.
    public int Port { get; } = FreePort.Next();
    public string BaseUrl => $"https://{HostName}:{Port}";
    /// <summary>nginx's access log in its default "combined" format (request line with its query, Referer), as an
    /// organisation's proxy would keep it.</summary>
    public string AccessLog() => File.Exists(Path.Combine(_dir, "access.log")) ? File.ReadAllText(Path.Combine(_dir, "access.log")) : "";
    /// <summary>The test CA that signed nginx's certificate (PEM).</summary>
    public string CaCertificateFile => Path.Combine(_dir, "ca.crt");

    public void Start()
    {
        if (!File.Exists(Binary))
            throw new Xunit.Sdk.XunitException("nginx is not installed: run the README's test command (it installs nginx-light).");
        Tool.Require("openssl", "openssl");
        string F(string name) => Path.Combine(_dir, name);
        Tool.Run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", F("ca.key"),
            "-out", F("ca.crt"), "-subj", "/CN=CertPortal Test Proxy CA", "-days", "2",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]).EnsureSuccess();
        Tool.Run("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", F("server.key"),
            "-out", F("server.csr"), "-subj", $"/CN={HostName}"]).EnsureSuccess();
        File.WriteAllText(F("server.ext"), $"subjectAltName=DNS:{HostName}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n");
        Tool.Run("openssl", ["x509", "-req", "-in", F("server.csr"), "-CA", F("ca.crt"), "-CAkey", F("ca.key"), "-CAcreateserial",
            "-out", F("server.crt"), "-days", "2", "-extfile", F("server.ext")]).EnsureSuccess();
        Directory.CreateDirectory(F("tmp"));
        // master_process off: one process, the one started here, running as this user (no worker user to grant files to).
        File.WriteAllText(F("nginx.conf"), $$"""
            daemon off;
            master_process off;
            pid {{F("nginx.pid")}};
            error_log {{F("error.log")}} warn;
            events { worker_connections 256; }
            http {
                access_log {{F("access.log")}} combined;
                client_body_temp_path {{F("tmp")}}/body;
                proxy_temp_path {{F("tmp")}}/proxy;
                fastcgi_temp_path {{F("tmp")}}/fastcgi;
                uwsgi_temp_path {{F("tmp")}}/uwsgi;
                scgi_temp_path {{F("tmp")}}/scgi;
                server {
                    listen 127.0.0.1:{{Port}} ssl;
                    server_name {{HostName}};
                    ssl_certificate {{F("server.crt")}};
                    ssl_certificate_key {{F("server.key")}};
                    location / {
                        proxy_pass http://127.0.0.1:{{backendPort}};
                        proxy_bind {{ProxyAddress}};
                        proxy_set_header Host $http_host;
                        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                        proxy_set_header X-Forwarded-Proto $scheme;
                    }
                }
            }
            """);
        var psi = new ProcessStartInfo(Binary) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { "-c", F("nginx.conf"), "-e", F("error.log") }) psi.ArgumentList.Add(a);
        _process = HelperProcesses.Start(psi);
        for (var i = 0; i < 100; i++)
        {
            if (_process.HasExited)
                throw new Xunit.Sdk.XunitException($"nginx exited: {_process.StandardError.ReadToEnd()} {File.ReadAllText(F("error.log"))}");
            try
            {
                using var c = new TcpClient();
                c.Connect(IPAddress.Loopback, Port);
                return;
            }
            catch (SocketException) { Thread.Sleep(50); }
        }
        throw new Xunit.Sdk.XunitException("nginx did not start listening within 5 s");
    }

    /// <summary>A HOME whose NSS database (~/.pki/nssdb, where Chromium on Linux looks) trusts the test CA for TLS,
    /// as an organisation's managed machines trust its CA.</summary>
    public string BrowserHomeTrustingTestCa()
    {
        Tool.Require("certutil", "libnss3-tools");
        var home = Path.Combine(_dir, "home");
        var db = Path.Combine(home, ".pki", "nssdb");
        Directory.CreateDirectory(db);
        Tool.Run("certutil", ["-N", "-d", $"sql:{db}", "--empty-password"]).EnsureSuccess();
        Tool.Run("certutil", ["-A", "-d", $"sql:{db}", "-n", "CertPortal Test Proxy CA", "-t", "C,,", "-i", CaCertificateFile]).EnsureSuccess();
        return home;
    }

    public void Dispose()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill();
            _process.WaitForExit(5000);
        }
        if (_process is not null) HelperProcesses.Forget(_process);
        _process?.Dispose();
        TempDir.Delete(_dir);
    }
}
