using System.Security.Cryptography.X509Certificates;
using CertPortal.Escrow;
using CertPortal.Tests.Infrastructure;
using Org.BouncyCastle.Asn1.Nist;
using Org.BouncyCastle.Cms;
using Org.BouncyCastle.Crypto.Generators;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Security;
using BcX509Certificate = Org.BouncyCastle.X509.X509Certificate;

namespace CertPortal.Tests.Escrow;

/// <summary>Agent shares are standard CMS: an agent need not trust our CLI (<c>openssl cms -decrypt</c>
/// opens what the server encrypts), and our CLI opens what a conforming tool encrypts. For EC agents this
/// needs the RFC 5753 key derivation OpenSSL uses, not BouncyCastle's (bcgit/bc-csharp#697).</summary>
public sealed class AgentShareInteropTests : IDisposable
{
    private readonly ToolDir _dir = new("agent-share-interop");

    public void Dispose() => _dir.Dispose();

    private static readonly byte[] Share = ShamirSecretSharing.Split(Enumerable.Range(1, 32).Select(i => (byte)i).ToArray(), 2, 3)[1];

    [Theory]
    [InlineData("rsa:2048")]
    [InlineData("rsa:3072")]
    [InlineData("ec:P-256")]
    [InlineData("ec:P-384")]
    public void Openssl_opens_a_share_the_server_encrypted_to_an_agent_key_it_made(string newKey)
    {
        var (key, cert) = OpensslAgent(newKey);
        var pem = _dir.Write("share.pem", AgentShareEncryption.ToPem(EncryptAsServer(cert)));

        var output = _dir.File("share.bin");
        var decrypted = Tool.Run("openssl", ["cms", "-decrypt", "-inform", "PEM", "-in", pem, "-recip", cert, "-inkey", key, "-binary", "-out", output]);
        Assert.True(decrypted.ExitCode == 0, decrypted.Output);
        Assert.Equal(Share, File.ReadAllBytes(output));
    }

    [Theory]
    [InlineData("ec:P-256", "sha1")]   // OpenSSL's default KDF for ECDH recipients
    [InlineData("ec:P-256", "sha256")]
    [InlineData("ec:P-384", "sha384")]
    [InlineData("rsa:2048", null)]
    public void Certportal_kra_opens_a_share_openssl_encrypted(string newKey, string? kdf)
    {
        var (key, cert) = OpensslAgent(newKey);
        var plain = _dir.Write("plain.bin", Share);
        var pem = _dir.File("openssl-share.pem");
        string[] keyopt = kdf is null ? [] : ["-keyopt", "ecdh_kdf_md:" + kdf];
        Tool.Run("openssl", ["cms", "-encrypt", "-binary", "-aes256", "-in", plain, "-outform", "PEM", "-out", pem, "-recip", cert, .. keyopt])
            .EnsureSuccess();

        var opened = EscrowApp.RunKra("decrypt-share", "--share", pem, "--key", key, "--output", "plaintext");
        Assert.Equal(Convert.ToBase64String(Share), opened.EnsureSuccess().Stdout.Trim());
    }

    /// <summary>Shares escrowed before the server derived EC key-encryption keys itself were written by
    /// BouncyCastle's generator; they must stay recoverable.</summary>
    [Fact]
    public void Certportal_kra_still_opens_an_ec_share_written_the_way_earlier_servers_wrote_it()
    {
        var (key, cert) = OpensslAgent("ec:P-256");
        var recipient = new BcX509Certificate(X509Certificate2.CreateFromPem(File.ReadAllText(cert)).RawData);
        var random = new SecureRandom();
        var ephemeralGenerator = new ECKeyPairGenerator("ECDH");
        ephemeralGenerator.Init(new ECKeyGenerationParameters(((ECPublicKeyParameters)recipient.GetPublicKey()).Parameters, random));
        var ephemeral = ephemeralGenerator.GenerateKeyPair();
        var generator = new CmsEnvelopedDataGenerator(random);
        generator.AddKeyAgreementRecipient(CmsEnvelopedGenerator.ECDHSha256Kdf, ephemeral.Private, ephemeral.Public, recipient,
            CmsEnvelopedGenerator.Aes256Wrap);
        var legacy = generator.Generate(new CmsProcessableByteArray(Share), NistObjectIdentifiers.IdAes256Cbc).ContentInfo.GetEncoded("DER");
        var pem = _dir.Write("legacy-share.pem", AgentShareEncryption.ToPem(legacy));

        var opened = EscrowApp.RunKra("decrypt-share", "--share", pem, "--key", key, "--output", "plaintext");
        Assert.Equal(Convert.ToBase64String(Share), opened.EnsureSuccess().Stdout.Trim());
    }

    [Fact]
    public void An_ec_share_for_another_agent_is_refused()
    {
        var (_, cert) = OpensslAgent("ec:P-256");
        var (otherKey, _) = OpensslAgent("ec:P-256", "other");
        var encrypted = EncryptAsServer(cert);
        var pem = _dir.Write("share.pem", AgentShareEncryption.ToPem(encrypted));
        var wrongKey = EscrowApp.RunKra("decrypt-share", "--share", pem, "--key", otherKey, "--output", "plaintext");
        Assert.Equal(1, wrongKey.ExitCode);
        Assert.Contains("cannot open the share", wrongKey.Stderr);
    }

    private byte[] EncryptAsServer(string certFile)
    {
        using var certificate = X509Certificate2.CreateFromPem(File.ReadAllText(certFile));
        return new AgentShareEncryption(new AgentCertificateValidator()).EncryptShare(Share, certificate);
    }

    private (string Key, string Cert) OpensslAgent(string newKey, string name = "agent")
    {
        string[] keyArgs = newKey.StartsWith("ec:", StringComparison.Ordinal)
            ? ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:" + newKey[3..], "-addext", "keyUsage=critical,keyAgreement"]
            : ["-newkey", newKey, "-addext", "keyUsage=critical,keyEncipherment"];
        var key = _dir.File(name + ".key");
        var cert = _dir.File(name + ".pem");
        Tool.Run("openssl", ["req", "-x509", .. keyArgs, "-nodes", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=" + name])
            .EnsureSuccess();
        return (key, cert);
    }
}
