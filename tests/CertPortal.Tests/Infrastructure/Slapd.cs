using System.Globalization;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace CertPortal.Tests.Infrastructure;

/// <summary>A private OpenLDAP slapd on a free loopback port (never the system service), with
/// dc=example,dc=test, ou=people and ou=pki. Can be stopped and started again on the same port and
/// database, for tests of what happens while the directory is down. With <c>tls</c>: a server certificate
/// from a test CA (made with openssl), an ldaps:// listener too, and simple binds refused without TLS
/// (slapd's <c>security simple_bind</c>), so a client that forgets StartTLS cannot bind.</summary>
public sealed class Slapd : IAsyncLifetime
{
    private readonly bool _tls;
    private readonly string _globalConfig = "";
    private readonly string _databaseConfig = "";
    private readonly bool _serviceAccount;

    // One public constructor: xunit builds plain fixtures with it.
    public Slapd() { }

    private Slapd(bool tls, string globalConfig = "", string databaseConfig = "", bool serviceAccount = false) =>
        (_tls, _globalConfig, _databaseConfig, _serviceAccount) = (tls, globalConfig, databaseConfig, serviceAccount);

    /// <summary>A slapd whose service account (<see cref="ServiceDn"/>, which may read and write everything, as a deployment's
    /// does) gets at most <paramref name="total"/> entries from a paged search, however many pages it asks for: OpenLDAP's
    /// <c>limits ... size.prtotal</c>. The rootdn is never limited, so a client that should meet the limit binds as the account.</summary>
    public static Slapd WithPagedResultsTotal(int total) =>
        new(tls: false, databaseConfig: string.Create(CultureInfo.InvariantCulture, $"""
            limits dn.exact="{ServiceDn}" size.prtotal={total}
            access to * by users write by * read
            """), serviceAccount: true);

    /// <summary>The service account of <see cref="WithPagedResultsTotal"/>.</summary>
    public const string ServiceDn = "cn=certportal,dc=example,dc=test";
    public const string ServicePassword = "slapd-service-secret";

    public static Slapd WithTls() => new(tls: true);

    /// <summary>A slapd that closes the connection on any request larger than <paramref name="bytes"/> from a bound client
    /// (slapd.conf's sockbuf_max_incoming_auth; 4 MiB by default), as it does with a CRL too large for it.</summary>
    public static Slapd WithRequestLimit(int bytes) =>
        new(tls: false, globalConfig: string.Create(CultureInfo.InvariantCulture, $"sockbuf_max_incoming_auth {bytes}"));

    public const string Suffix = "dc=example,dc=test";
    public const string RootDn = "cn=admin,dc=example,dc=test";
    public const string RootPassword = "slapd-test-secret";
    public const string PeopleDn = "ou=people,dc=example,dc=test";
    public const string PkiDn = "cn=CertPortal Issuing CA,ou=pki,dc=example,dc=test";
    public const string RootPkiDn = "cn=CertPortal Root CA,ou=pki,dc=example,dc=test";

    private readonly string _dir = TempDir.Create("slapd");
    private Process? _process;
    public int Port { get; private set; } = FreePort.Next();
    public int TlsPort { get; private set; } = FreePort.Next();
    public string Url => $"ldap://127.0.0.1:{Port}";
    public string LdapsUrl => $"ldaps://127.0.0.1:{TlsPort}";
    public bool Tls => _tls;

    /// <summary>With TLS: the test CA's certificate (PEM), and a directory holding it under its subject hash.</summary>
    public string CaCertificateFile => Path.Combine(_dir, "ca.crt");
    public string TrustedCaDirectory => Path.Combine(_dir, "trusted");

    public async Task InitializeAsync()
    {
        Tool.Require("ldapsearch", "ldap-utils");
        if (!File.Exists("/usr/sbin/slapd"))
            throw new Xunit.Sdk.XunitException("slapd is not installed: run the README's test command (it installs slapd).");
        Directory.CreateDirectory(Path.Combine(_dir, "db"));
        var tlsConfig = _tls ? MakeTlsCertificates() : "";
        File.WriteAllText(Path.Combine(_dir, "slapd.conf"), $"""
            include /etc/ldap/schema/core.schema
            include /etc/ldap/schema/cosine.schema
            include /etc/ldap/schema/inetorgperson.schema
            {tlsConfig}
            {_globalConfig}
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
            {_databaseConfig}
            """);
        // A restart (StartAsync) keeps the ports; the first start moves to new ones if another process took them.
        var ports = await FreePort.StartAsync([Port, TlsPort], ports => { (Port, TlsPort) = (ports[0], ports[1]); return StartAsync(); });
        (Port, TlsPort) = (ports[0], ports[1]);
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
        if (_serviceAccount)
            Modify($"""
                dn: {ServiceDn}
                objectClass: person
                cn: certportal
                sn: service
                userPassword: {ServicePassword}
                """, add: true);
    }

    public async Task StartAsync()
    {
        var psi = new ProcessStartInfo("/usr/sbin/slapd")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        // -d 0 keeps slapd in the foreground, so this process is slapd itself.
        var listen = _tls ? $"ldap://127.0.0.1:{Port}/ ldaps://127.0.0.1:{TlsPort}/" : $"ldap://127.0.0.1:{Port}/";
        foreach (var a in new[] { "-d", "0", "-h", listen, "-f", Path.Combine(_dir, "slapd.conf") }) psi.ArgumentList.Add(a);
        var pidFile = Path.Combine(_dir, "slapd.pid");
        File.Delete(pidFile);
        _process = HelperProcesses.Start(psi);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        for (var i = 0; i < 100; i++)
        {
            // slapd -d 0 prints nothing when a port is taken; it just exits (FreePort then sees the port taken).
            if (_process.HasExited)
            {
                HelperProcesses.Forget(_process);
                throw new InvalidOperationException($"slapd exited with {_process.ExitCode}");
            }
            // slapd writes its pid file only once its listeners are bound: a connection that succeeds before
            // that may have reached whoever else holds the port.
            if (File.Exists(pidFile) && File.ReadAllText(pidFile).Trim() == _process.Id.ToString(CultureInfo.InvariantCulture))
            {
                try
                {
                    using var c = new TcpClient();
                    await c.ConnectAsync(IPAddress.Loopback, Port);
                    return;
                }
                catch (SocketException) { /* not accepting yet */ }
            }
            await Task.Delay(50);
        }
        throw new TimeoutException("slapd did not start listening");
    }

    public async Task StopAsync()
    {
        if (_process is null || _process.HasExited) return;
        Tool.Run("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)]);
        if (!_process.WaitForExit(10_000)) _process.Kill();
        await _process.WaitForExitAsync();
        HelperProcesses.Forget(_process);
        _process = null;
    }

    /// <summary>ldapsearch as the directory admin; LDIF without line wrapping.</summary>
    public string Search(string baseDn, string filter, params string[] attributes) =>
        Tool.Run("ldapsearch", [.. ClientTls, "-x", "-LLL", "-o", "ldif-wrap=no", "-H", Url, "-D", RootDn, "-w", RootPassword, "-b", baseDn, filter, .. attributes],
            env: ClientEnv).EnsureSuccess().Stdout;

    /// <summary>ldapmodify (or ldapadd) with the given LDIF, as the directory admin.</summary>
    public void Modify(string ldif, bool add = false) =>
        Tool.Run("ldapmodify", [.. ClientTls, .. add ? new[] { "-a" } : [], "-x", "-H", Url, "-D", RootDn, "-w", RootPassword],
            stdin: Dedent(ldif) + "\n", env: ClientEnv).EnsureSuccess();

    /// <summary>A referral object (objectClass referral, RFC 3296 §3) to ldap://partner.example.test/; added with ManageDsaIT
    /// (-M), as slapd wants for one. Already there (68 entryAlreadyExists) is fine.</summary>
    public void AddReferral(string dn, string ou)
    {
        var add = Tool.Run("ldapmodify", [.. ClientTls, "-a", "-M", "-x", "-H", Url, "-D", RootDn, "-w", RootPassword],
            stdin: Dedent($"""
                dn: {dn}
                objectClass: referral
                objectClass: extensibleObject
                ou: {ou}
                ref: ldap://partner.example.test/{dn}
                """) + "\n", env: ClientEnv);
        if (add.ExitCode != 68) add.EnsureSuccess();
    }

    /// <summary>Deletes a referral object (with ManageDsaIT: without it, slapd answers with the referral).</summary>
    public void RemoveReferral(string dn) =>
        Tool.Run("ldapdelete", [.. ClientTls, "-M", "-x", "-H", Url, "-D", RootDn, "-w", RootPassword, dn], env: ClientEnv).EnsureSuccess();

    /// <summary>A simple bind as the admin over plain LDAP, without StartTLS (refused when TLS is on).</summary>
    public Tool.Result PlainBind() =>
        Tool.Run("ldapwhoami", ["-x", "-H", Url, "-D", RootDn, "-w", RootPassword]);

    // The test's own ldap-utils use StartTLS (-ZZ: must succeed) and trust the test CA when TLS is on.
    private string[] ClientTls => _tls ? ["-ZZ"] : [];
    private Dictionary<string, string>? ClientEnv => _tls ? new() { ["LDAPTLS_CACERT"] = CaCertificateFile } : null;

    /// <summary>A test CA and a server certificate for 127.0.0.1/localhost; returns slapd's TLS settings.</summary>
    private string MakeTlsCertificates()
    {
        Tool.Require("openssl", "openssl");
        string F(string name) => Path.Combine(_dir, name);
        Tool.Run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", F("ca.key"),
            "-out", F("ca.crt"), "-subj", "/CN=Test Directory CA", "-days", "2",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]).EnsureSuccess();
        Tool.Run("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", F("server.key"),
            "-out", F("server.csr"), "-subj", "/CN=127.0.0.1"]).EnsureSuccess();
        File.WriteAllText(F("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n");
        Tool.Run("openssl", ["x509", "-req", "-in", F("server.csr"), "-CA", F("ca.crt"), "-CAkey", F("ca.key"), "-CAcreateserial",
            "-out", F("server.crt"), "-days", "2", "-extfile", F("server.ext")]).EnsureSuccess();
        Directory.CreateDirectory(TrustedCaDirectory);
        File.Copy(F("ca.crt"), Path.Combine(TrustedCaDirectory, "test-directory-ca.pem"));
        Tool.Run("openssl", ["rehash", TrustedCaDirectory]).EnsureSuccess();
        return $"""
            TLSCACertificateFile {F("ca.crt")}
            TLSCertificateFile {F("server.crt")}
            TLSCertificateKeyFile {F("server.key")}
            security simple_bind=1
            """;
    }

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
}
