using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Escrow;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Escrow;

/// <summary>certportal-kra run as a program, the way an agent runs it: keys it makes open the shares the
/// server encrypts to their certificates, and mistakes give a message and an exit code, not a stack trace.</summary>
public sealed class KraCliTests : IDisposable
{
    private readonly ToolDir _dir = new("kra-cli");

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData("RSA-3072")]
    [InlineData("EC-P384")]
    public void Agent_key_made_by_the_CLI_opens_a_share_encrypted_to_its_certificate_and_no_other_key_does(string algorithm)
    {
        var (key, cert) = CreateAgent("alice", algorithm, "alice passphrase 1");
        var (otherKey, _) = CreateAgent("bob", "EC-P256", "bob passphrase 12");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
        Assert.Contains("ENCRYPTED PRIVATE KEY", File.ReadAllText(key));

        var share = ShamirSecretSharing.Split(new byte[32], 2, 3)[0];
        using var certificate = X509Certificate2.CreateFromPem(File.ReadAllText(cert));
        var encrypted = new AgentShareEncryption(new AgentCertificateValidator()).EncryptShare(share, certificate);
        // As the server serves it: the encrypted share, then the request's submission certificate.
        var requestId = Guid.CreateVersion7();
        using var requestKey = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        using var requestCertificate = SubmissionCertificate(requestId, requestKey);
        var shareFile = _dir.Write("share.pem", AgentShareEncryption.ToPem(encrypted) + "\n" + requestCertificate.ExportCertificatePem());

        // Passphrase from stdin ("-") this time. What it prints opens with the request's key only, and names the request.
        var decrypted = EscrowApp.RunKraWith("alice passphrase 1\n", "decrypt-share", "--share", shareFile, "--key", key, "--passphrase-file", "-");
        Assert.Contains(requestId.ToString(), decrypted.EnsureSuccess().Stderr);
        var content = SealedShare.Open(Convert.FromBase64String(decrypted.Stdout.Trim()), requestKey);
        Assert.True(SealedShare.TryDecodeContent(content!, out var sealedFor, out var sealedShare));
        Assert.Equal(requestId, sealedFor);
        Assert.Equal(share, sealedShare);
        Assert.DoesNotContain(Convert.ToBase64String(share), decrypted.Output);
        using var otherKey2 = ECDiffieHellman.Create(ECCurve.NamedCurves.nistP256);
        Assert.Null(SealedShare.Open(Convert.FromBase64String(decrypted.Stdout.Trim()), otherKey2));
        // --output plaintext: the bare share, for a server that predates sealed shares.
        var plaintext = EscrowApp.RunKraWith("alice passphrase 1\n", "decrypt-share", "--share", shareFile, "--key", key, "--output", "plaintext");
        Assert.Equal(Convert.ToBase64String(share), plaintext.EnsureSuccess().Stdout.Trim());
        // A share file without the request's certificate: said before the passphrase is asked for.
        var bare = _dir.Write("bare.pem", AgentShareEncryption.ToPem(encrypted));
        var noCertificate = EscrowApp.RunKra("decrypt-share", "--share", bare, "--key", key);
        Assert.Equal(1, noCertificate.ExitCode);
        Assert.Contains("no request certificate", noCertificate.Stderr);

        var wrongPassphrase = EscrowApp.RunKraWith("not alice's\n", "decrypt-share", "--share", shareFile, "--key", key);
        Assert.Equal(1, wrongPassphrase.ExitCode);
        Assert.Contains("passphrase", wrongPassphrase.Stderr);
        var wrongKey = EscrowApp.RunKraWith("bob passphrase 12\n", "decrypt-share", "--share", shareFile, "--key", otherKey);
        Assert.Equal(1, wrongKey.ExitCode);
        Assert.Contains("cannot open the share", wrongKey.Stderr);
        var notCms = EscrowApp.RunKra("decrypt-share", "--share", cert, "--key", key);
        Assert.Equal(1, notCms.ExitCode);
        Assert.DoesNotContain("   at ", notCms.Output);
    }

    [Fact]
    public void Mistakes_give_a_message_and_an_exit_code()
    {
        Assert.Equal(2, EscrowApp.RunKra().ExitCode);
        Assert.Equal(0, EscrowApp.RunKra("--help").ExitCode);
        Assert.Equal(2, EscrowApp.RunKra("encrypt-everything").ExitCode);
        Assert.Equal(2, EscrowApp.RunKra("decrypt-share", "--share", "x.pem").ExitCode);
        Assert.Equal(2, EscrowApp.RunKra("decrypt-share", "--share", "x.pem", "--key", "k.pem", "--output", "json").ExitCode);
        Assert.Equal(2, EscrowApp.RunKra("decrypt-share", "--share", "x.pem", "--key", "k.pem", "--passphrase", "on-the-command-line").ExitCode);
        Assert.Equal(2, EscrowApp.RunKra("create-agent", "--name", "x", "--algorithm", "DSA-1024", "--key-out", _dir.File("k"), "--cert-out", _dir.File("c")).ExitCode);

        var missing = EscrowApp.RunKra("decrypt-share", "--share", _dir.File("none.pem"), "--key", _dir.File("none.key"));
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("Cannot read", missing.Stderr);

        var shortPassphrase = EscrowApp.RunKraWith("short\n", "create-agent", "--name", "x", "--key-out", _dir.File("k"), "--cert-out", _dir.File("c"));
        Assert.Equal(1, shortPassphrase.ExitCode);
        // Never overwrites an existing key file.
        var (key, _) = CreateAgent("carol", "EC-P256", "carol passphrase");
        var again = EscrowApp.RunKraWith("carol passphrase\n", "create-agent", "--name", "carol", "--key-out", key, "--cert-out", _dir.File("c2.pem"));
        Assert.Equal(1, again.ExitCode);
    }

    [Fact]
    public void Create_agent_never_writes_the_certificate_over_the_key_nor_crashes_on_what_it_cannot_write()
    {
        var pass = _dir.Write("p.pass", "alice passphrase 1\n");
        Tool.Result Create(string keyOut, string certOut, params string[] more) =>
            EscrowApp.RunKra(["create-agent", "--name", "alice", "--key-out", keyOut, "--cert-out", certOut, "--passphrase-file", pass, .. more]);

        // One file named twice: the certificate replaced the key, and the tool said it had worked.
        var same = Create(_dir.File("same.pem"), _dir.File("same.pem"));
        Assert.Equal(2, same.ExitCode);
        Assert.False(File.Exists(_dir.File("same.pem")));
        // An existing certificate file (an agent's earlier one) is not overwritten.
        var earlier = _dir.Write("earlier.pem", "the agent's registered certificate");
        Assert.Equal(1, Create(_dir.File("new.key"), earlier).ExitCode);
        Assert.Equal("the agent's registered certificate", File.ReadAllText(earlier));
        Assert.False(File.Exists(_dir.File("new.key")));
        // A directory for the certificate, a validity past year 9999: an error message, no stack trace, no key left behind.
        var directory = Create(_dir.File("dir.key"), _dir.Path);
        Assert.Equal(1, directory.ExitCode);
        var tooLong = Create(_dir.File("long.key"), _dir.File("long.pem"), "--days", "9999999");
        Assert.Equal(2, tooLong.ExitCode);
        foreach (var r in new[] { same, directory, tooLong }) Assert.DoesNotContain("   at ", r.Output);
        Assert.False(File.Exists(_dir.File("dir.key")));
        Assert.False(File.Exists(_dir.File("long.key")));
    }

    /// <summary>A submission certificate as the server makes one (RecoverySubmissionKey): CN = the request id.</summary>
    private static X509Certificate2 SubmissionCertificate(Guid requestId, ECDiffieHellman key)
    {
        using var signer = ECDsa.Create(key.ExportParameters(true));
        var subject = new X500DistinguishedNameBuilder();
        subject.AddOrganizationName(SealedShare.SubjectOrganization);
        subject.AddCommonName(requestId.ToString("D"));
        var request = new CertificateRequest(subject.Build(), signer, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyAgreement, true));
        return request.Create(request.SubjectName, X509SignatureGenerator.CreateForECDsa(signer), DateTimeOffset.UtcNow.AddMinutes(-5),
            DateTimeOffset.UtcNow.AddDays(1), [0x01, 0x23]);
    }

    private (string Key, string Cert) CreateAgent(string name, string algorithm, string passphrase)
    {
        var key = _dir.File(name + ".key");
        var cert = _dir.File(name + ".pem");
        var passphraseFile = _dir.Write(name + ".pass", passphrase + "\n");
        var created = EscrowApp.RunKra("create-agent", "--name", name, "--algorithm", algorithm, "--key-out", key, "--cert-out", cert,
            "--passphrase-file", passphraseFile).EnsureSuccess();
        Assert.Matches("SHA-256 fingerprint: [0-9A-F]{64}", created.Stdout);
        return (key, cert);
    }
}
