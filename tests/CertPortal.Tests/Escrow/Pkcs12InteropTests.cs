using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Escrow;
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

/// <summary>Shamir's secret sharing on its own.</summary>
public sealed class ShamirSecretSharingTests
{
    [Theory]
    [InlineData(2, 3)]
    [InlineData(3, 5)]
    public void Every_M_subset_reconstructs_and_no_smaller_subset_does(int m, int n)
    {
        var secret = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
        var shares = ShamirSecretSharing.Split(secret, m, n);
        foreach (var subset in Subsets(n, m))
            Assert.Equal(secret, ShamirSecretSharing.Combine(subset.Select(i => shares[i]).ToList()));
        foreach (var subset in Subsets(n, m - 1).Where(s => s.Count >= 2))
            Assert.NotEqual(secret, ShamirSecretSharing.Combine(subset.Select(i => shares[i]).ToList()));
    }

    [Fact]
    public void Share_bytes_are_uniform_whatever_the_secret()
    {
        // The same all-zero secret split 4096 times: each y byte of a share must look uniform over 0..255.
        var counts = new int[256];
        var secret = new byte[4];
        for (var i = 0; i < 4096; i++)
            foreach (var b in ShamirSecretSharing.Split(secret, 2, 3)[0].AsSpan(1)) counts[b]++;
        // 16384 samples, 64 expected per value; a chi-square over 255 degrees of freedom beyond 340 has p < 0.001.
        var chi = counts.Sum(c => (c - 64.0) * (c - 64.0) / 64.0);
        Assert.True(chi < 340, $"chi-square {chi}");
    }

    [Fact]
    public void Bad_parameters_and_duplicate_shares_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ShamirSecretSharing.Split(new byte[4], 1, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => ShamirSecretSharing.Split(new byte[4], 4, 3));
        var shares = ShamirSecretSharing.Split(new byte[4], 2, 3);
        Assert.Throws<ArgumentException>(() => ShamirSecretSharing.Combine([shares[0], shares[0]]));
    }

    private static IEnumerable<List<int>> Subsets(int n, int k)
    {
        if (k == 0) { yield return []; yield break; }
        for (var first = 0; first < n; first++)
            foreach (var rest in Subsets(n, k - 1).Where(r => r.All(x => x > first)))
                yield return [first, .. rest];
    }
}
