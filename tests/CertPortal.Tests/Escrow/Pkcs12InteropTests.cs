using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Escrow;

/// <summary>The PKCS#12 files of server-generated keys open in OpenSSL, import into NSS, and (in the
/// compatibility format) into gpgsm 2.2, which cannot read PBES2/AES.</summary>
public sealed class Pkcs12InteropTests(EscrowApp app) : IClassFixture<EscrowApp>, IAsyncLifetime
{
    public async Task InitializeAsync()
    {
        // N = 3 by default (Escrow:MinimumAgents).
        var policy = await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/escrow/policy");
        for (var i = policy.GetProperty("activeAgents").GetInt32(); i < 3; i++) await app.AddAgentAsync(i == 1 ? "EC-P256" : "RSA-2048");
    }

    public Task DisposeAsync() => Task.CompletedTask;

    [Theory]
    [InlineData("RSA-2048", null)]
    [InlineData("EC-P256", null)]
    [InlineData("RSA-3072", "compatible-3des")]
    public async Task Openssl_opens_it_and_nss_imports_it(string keyAlgorithm, string? format)
    {
        Tool.Require("openssl", "openssl");
        Tool.Require("pk12util", "libnss3-tools");
        var email = $"p12.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var enrolled = await app.EnrollServerKeyAsync(email, keyAlgorithm, format);
        using var dir = new ToolDir("p12");
        var p12 = dir.Write("id.p12", Convert.FromBase64String(enrolled.GetProperty("pkcs12").GetString()!));

        var info = Tool.Run("openssl", ["pkcs12", "-in", p12, "-info", "-noout", "-passin", "pass:" + EscrowApp.Pkcs12Password]);
        Assert.True(info.ExitCode == 0, info.Output);
        Assert.Contains(format is null ? "PBES2" : "pbeWithSHA1And3-KeyTripleDES-CBC", info.Output);
        // The MAC and the iteration count (Escrow:Pkcs12Iterations) are what the README promises.
        Assert.Contains(format is null ? "MAC: sha256, Iteration 100000" : "MAC: sha1, Iteration 100000", info.Output);
        // The key in the file is the certificate's key, and the chain is there.
        var keyOnly = Tool.Run("openssl", ["pkcs12", "-in", p12, "-nocerts", "-nodes", "-passin", "pass:" + EscrowApp.Pkcs12Password]).EnsureSuccess().Stdout;
        var certsOnly = Tool.Run("openssl", ["pkcs12", "-in", p12, "-nokeys", "-passin", "pass:" + EscrowApp.Pkcs12Password]).EnsureSuccess().Stdout;
        var keyPub = Tool.Run("openssl", ["pkey", "-pubout", "-in", dir.Write("key.pem", keyOnly)]).EnsureSuccess().Stdout;
        var certPub = Tool.Run("openssl", ["x509", "-noout", "-pubkey", "-in", dir.Write("cert.pem", enrolled.GetProperty("certificatePem").GetString()!)])
            .EnsureSuccess().Stdout;
        Assert.Equal(certPub, keyPub);
        // Exactly one private key: the subscriber's (never a CA key riding along with the chain).
        Assert.Equal(1, keyOnly.Split("BEGIN PRIVATE KEY").Length - 1);
        Assert.Equal(3, certsOnly.Split("BEGIN CERTIFICATE").Length - 1);
        // Windows and Outlook show the name; the localKeyID pairs this key with this certificate only.
        Pkcs12Attributes.AssertNamedAndKeyedByCertificate(p12, EscrowApp.Pkcs12Password, enrolled.GetProperty("certificatePem").GetString()!,
            "Test Person (encryption) - CertPortal");

        var db = "sql:" + dir.Path;
        Tool.Run("certutil", ["-N", "-d", db, "--empty-password"]).EnsureSuccess();
        Tool.Run("pk12util", ["-i", p12, "-d", db, "-W", EscrowApp.Pkcs12Password]).EnsureSuccess();
        var keys = Tool.Run("certutil", ["-K", "-d", db]).EnsureSuccess().Stdout;
        Assert.Contains(keyAlgorithm.StartsWith("RSA", StringComparison.Ordinal) ? "rsa" : "ec", keys);
    }

    [Fact]
    public async Task Gpgsm_imports_the_compatibility_variant()
    {
        Tool.Require("gpgsm", "gpgsm");
        var email = $"gpgsm.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var enrolled = await app.EnrollServerKeyAsync(email, "RSA-2048", "compatible-3des");
        using var dir = new ToolDir("gpgsm");
        var home = Path.Combine(dir.Path, "gnupg");
        Directory.CreateDirectory(home, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.WriteAllText(Path.Combine(home, "gpg-agent.conf"), "allow-loopback-pinentry\n");
        var env = new Dictionary<string, string> { ["GNUPGHOME"] = home };
        try
        {
            var p12 = dir.Write("id.p12", Convert.FromBase64String(enrolled.GetProperty("pkcs12").GetString()!));
            var import = Tool.Run("gpgsm", ["--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0", "--import", p12],
                stdin: EscrowApp.Pkcs12Password + "\n", env: env);
            Assert.True(import.ExitCode == 0, import.Output);
            var secret = Tool.Run("gpgsm", ["--batch", "--list-secret-keys"], env: env).EnsureSuccess().Stdout;
            Assert.True(secret.Contains(email), import.Output + secret);
            Assert.DoesNotContain("CertPortal Root CA/O=CertPortal\n      Subject: /CN=CertPortal Root CA", secret);
            Assert.Contains("secret keys imported: 1", import.Output);
        }
        finally
        {
            Tool.Run("gpgconf", ["--kill", "all"], env: env);
        }
    }
}
