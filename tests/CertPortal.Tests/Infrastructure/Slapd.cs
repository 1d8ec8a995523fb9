using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace CertPortal.Tests.Infrastructure;

/// <summary>A private OpenLDAP slapd on a free loopback port (never the system service), with
/// dc=example,dc=test, ou=people and ou=pki. Can be stopped and started again on the same port and
/// database, for tests of what happens while the directory is down.</summary>
public sealed class Slapd : IAsyncLifetime
{
    public const string Suffix = "dc=example,dc=test";
    public const string RootDn = "cn=admin,dc=example,dc=test";
    public const string RootPassword = "slapd-test-secret";
    public const string PeopleDn = "ou=people,dc=example,dc=test";
    public const string PkiDn = "cn=CertPortal Issuing CA,ou=pki,dc=example,dc=test";

    private readonly string _dir = TempDir.Create("slapd");
    private Process? _process;
    public int Port { get; } = FreePort();
    public string Url => $"ldap://127.0.0.1:{Port}";

    public async Task InitializeAsync()
    {
        Tool.Require("ldapsearch", "ldap-utils");
        if (!File.Exists("/usr/sbin/slapd"))
            throw new Xunit.Sdk.XunitException("slapd is not installed: run the README's test command (it installs slapd).");
        Directory.CreateDirectory(Path.Combine(_dir, "db"));
        File.WriteAllText(Path.Combine(_dir, "slapd.conf"), $"""
            include /etc/ldap/schema/core.schema
            include /etc/ldap/schema/cosine.schema
            include /etc/ldap/schema/inetorgperson.schema
            modulepath /usr/lib/ldap
            moduleload back_mdb
            pidfile {_dir}/slapd.pid
            database mdb
            maxsize 67108864
            suffix "{Suffix}"
            rootdn "{RootDn}"
            rootpw {RootPassword}
            directory {_dir}/db
            index objectClass eq
            index mail eq
            """);
        await StartAsync();
        Modify($"""
            dn: {Suffix}
            objectClass: dcObject
            objectClass: organization
            dc: example
            o: Example

            dn: {PeopleDn}
            objectClass: organizationalUnit
            ou: people

            dn: ou=pki,{Suffix}
            objectClass: organizationalUnit
            ou: pki
            """, add: true);
    }

    public async Task StartAsync()
    {
        var psi = new ProcessStartInfo("/usr/sbin/slapd")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        // -d 0 keeps slapd in the foreground, so this process is slapd itself.
        foreach (var a in new[] { "-d", "0", "-h", $"ldap://127.0.0.1:{Port}/", "-f", Path.Combine(_dir, "slapd.conf") }) psi.ArgumentList.Add(a);
        _process = Process.Start(psi)!;
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        for (var i = 0; i < 100; i++)
        {
            try
            {
                using var c = new TcpClient();
                await c.ConnectAsync(IPAddress.Loopback, Port);
                return;
            }
            catch (SocketException) { await Task.Delay(50); }
            if (_process.HasExited) throw new InvalidOperationException($"slapd exited with {_process.ExitCode}");
        }
        throw new TimeoutException("slapd did not start listening");
    }

    public async Task StopAsync()
    {
        if (_process is null || _process.HasExited) return;
        Tool.Run("kill", ["-TERM", _process.Id.ToString()]);
        if (!_process.WaitForExit(10_000)) _process.Kill();
        await _process.WaitForExitAsync();
        _process = null;
    }

    /// <summary>ldapsearch as the directory admin; LDIF without line wrapping.</summary>
    public string Search(string baseDn, string filter, params string[] attributes) =>
        Tool.Run("ldapsearch", ["-x", "-LLL", "-o", "ldif-wrap=no", "-H", Url, "-D", RootDn, "-w", RootPassword, "-b", baseDn, filter, .. attributes])
            .EnsureSuccess().Stdout;

    /// <summary>ldapmodify (or ldapadd) with the given LDIF, as the directory admin.</summary>
    public void Modify(string ldif, bool add = false) =>
        Tool.Run("ldapmodify", [.. add ? new[] { "-a" } : [], "-x", "-H", Url, "-D", RootDn, "-w", RootPassword], stdin: Dedent(ldif) + "\n").EnsureSuccess();

    /// <summary>The binary values of an attribute in ldapsearch's LDIF ("name:: base64").</summary>
    public static List<byte[]> BinaryValues(string ldif, string attribute) =>
        ldif.Split('\n')
            .Where(l => l.StartsWith(attribute + ":: ", StringComparison.OrdinalIgnoreCase))
            .Select(l => Convert.FromBase64String(l[(attribute.Length + 3)..].Trim()))
            .ToList();

    /// <summary>Text values ("name: value" or base64 "name:: value").</summary>
    public static List<string> TextValues(string ldif, string attribute) =>
        ldif.Split('\n').Select(l => l.TrimEnd('\r')).SelectMany(l =>
            l.StartsWith(attribute + ":: ", StringComparison.OrdinalIgnoreCase) ? [Encoding.UTF8.GetString(Convert.FromBase64String(l[(attribute.Length + 3)..]))]
            : l.StartsWith(attribute + ": ", StringComparison.OrdinalIgnoreCase) ? [l[(attribute.Length + 2)..]]
            : Array.Empty<string>()).ToList();

    public static string Dedent(string s) => string.Join('\n', s.Split('\n').Select(l => l.Trim()));

    public async Task DisposeAsync()
    {
        await StopAsync();
        TempDir.Delete(_dir);
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
