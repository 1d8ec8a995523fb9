using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Api;

/// <summary>The issuer writes certificates with CertificateEncoder instead of CertificateRequest.Create; the bytes
/// must be the same. With an RSA PKCS#1 issuing key the signature is deterministic, so whole certificates must be
/// byte-identical; with ECDSA the TBSCertificate must be, and the signature must verify (openssl too).</summary>
public sealed class CertificateEncoderTests
{
    public static TheoryData<string, string, string> Cases => new()
    {
        { "RSA-3072", "EC-P256", "Mailbox" },
        { "RSA-3072", "RSA-2048", "DisplayName" },
        { "EC-P256", "EC-P384", "Mailbox" },
        { "EC-P256", "RSA-2048", "DisplayName" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Issued_certificates_are_what_CertificateRequest_Create_writes(string issuingAlgorithm, string subscriber, string cnMode)
    {
        var options = Options(issuingAlgorithm, cnMode);
        var urls = new CaUrls("http://pki.example.com");
        var (root, issuing) = new CaKeyStore(options, TimeProvider.System).Create(urls);
        using var ca = new CaHierarchy(root, issuing, urls);
        var issuer = new CertificateIssuer(ca, options);
        var keyPair = SubscriberKeyPair.Generate(subscriber);
        var csr = CertificateRequest.LoadSigningRequestPem(keyPair.CreateCsrPem("alice@example.com"), HashAlgorithmName.SHA256);
        Assert.True(SubscriberKey.TryAccept(csr.PublicKey, out var key, out _));
        // Fractions of a second in the order, as the service makes them: both encoders drop them.
        var now = new DateTimeOffset(2026, 12, 4, 18, 0, 0, TimeSpan.Zero).AddTicks(1234567);
        var order = new CertificateOrder("alice@example.com", "Alice Q. Example", CertificateProfileName.Dual, key, SerialNumber.New(now),
            now.AddMinutes(-1), now.AddDays(365));

        var signed = issuer.Issue(order);
        using var expected = issuer.BuildRequest(order).Create(ca.Issuing.Certificate.SubjectName, ca.Issuing.SignatureGenerator,
            order.NotBefore, order.NotAfter, order.Serial);

        if (issuingAlgorithm.StartsWith("RSA", StringComparison.Ordinal))
            Assert.Equal(Convert.ToHexString(expected.RawData), Convert.ToHexString(signed.Der));
        else
            Assert.Equal(Convert.ToHexString(TbsOf(expected.RawData)), Convert.ToHexString(TbsOf(signed.Der)));
        using var cert = X509CertificateLoader.LoadCertificate(signed.Der);
        Assert.Equal(expected.Subject, signed.Subject);
        Assert.Equal(new DateTimeOffset(expected.NotBefore.ToUniversalTime()), signed.NotBefore);
        Assert.Equal(new DateTimeOffset(expected.NotAfter.ToUniversalTime()), signed.NotAfter);

        using var dir = new ToolDir("certificate-encoder");
        Tool.Require("openssl", "openssl");
        var verify = Tool.Run("openssl", ["verify", "-CAfile", dir.Write("root.pem", ca.Root.Certificate.ExportCertificatePem()),
            "-untrusted", dir.Write("issuing.pem", ca.Issuing.Certificate.ExportCertificatePem()), "-purpose", "any",
            dir.Write("c.pem", cert.ExportCertificatePem())]);
        Assert.Contains(": OK", verify.EnsureSuccess().Stdout);
    }

    [Fact]
    public void Times_from_2050_are_generalized_time_as_in_CertificateRequest_Create()
    {
        var options = Options("RSA-3072", "Mailbox");
        var urls = new CaUrls("http://pki.example.com");
        var (root, issuing) = new CaKeyStore(options, TimeProvider.System).Create(urls);
        using var ca = new CaHierarchy(root, issuing, urls);
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Assert.True(SubscriberKey.TryAccept(new PublicKey(ec), out var key, out _));
        var notBefore = new DateTimeOffset(2049, 12, 31, 23, 59, 59, TimeSpan.Zero).AddTicks(9_999_999);
        var order = new CertificateOrder("carol@example.com", "", CertificateProfileName.Encryption, key, SerialNumber.New(notBefore), notBefore, notBefore.AddDays(30));
        var request = new CertificateIssuer(ca, options).BuildRequest(order);
        var algorithm = ca.Issuing.SignatureGenerator.GetSignatureAlgorithmIdentifier(ca.Issuing.HashAlgorithm);

        var tbs = CertificateEncoder.Tbs(request, ca.Issuing.Certificate.SubjectName, algorithm, order.NotBefore, order.NotAfter, order.Serial);
        using var expected = request.Create(ca.Issuing.Certificate.SubjectName, ca.Issuing.SignatureGenerator, order.NotBefore, order.NotAfter, order.Serial);
        Assert.Equal(Convert.ToHexString(TbsOf(expected.RawData)), Convert.ToHexString(tbs));
        var parsed = TbsCertificate.Read(tbs);
        Assert.Equal(new DateTimeOffset(2049, 12, 31, 23, 59, 59, TimeSpan.Zero), parsed.NotBefore);
        Assert.Equal(2050, parsed.NotAfter.Year);
    }

    [Fact]
    public void The_linter_reads_a_tbs_and_the_certificate_made_from_it_alike()
    {
        var options = Options("EC-P256", "Mailbox");
        var urls = new CaUrls("http://pki.example.com");
        var (root, issuing) = new CaKeyStore(options, TimeProvider.System).Create(urls);
        using var ca = new CaHierarchy(root, issuing, urls);
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Assert.True(SubscriberKey.TryAccept(new PublicKey(ec), out var key, out _));
        var order = new CertificateOrder("bob@example.com", "", CertificateProfileName.Signing, key, SerialNumber.New(DateTimeOffset.UtcNow),
            DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddDays(900));
        // 900 days is longer than the BR allow: the TBS is refused before anything is signed.
        var refused = Assert.Throws<CertificateLintException>(() => new CertificateIssuer(ca, options).Issue(order));
        Assert.Contains("validity longer than 825 days", refused.Problems);

        using var cert = new CertificateIssuer(ca, options).BuildRequest(order).Create(ca.Issuing.Certificate.SubjectName,
            ca.Issuing.SignatureGenerator, order.NotBefore, order.NotAfter, order.Serial);
        Assert.Equal(refused.Problems, CertificateLinter.Lint(cert, order, options));
    }

    [Fact]
    public void The_linters_copy_of_the_extensions_is_what_X509Certificate2_reads()
    {
        // TbsCertificate.Read makes its extensions with Oid objects made once (not looked up per extension): each must still be the
        // type, OID, criticality and value .NET's own certificate reader gives, with deltas on (freshestCRL among them).
        var options = Options("EC-P256", "Mailbox");
        options.Crl.DeltaBaseInterval = TimeSpan.FromMinutes(30);
        var urls = new CaUrls("http://pki.example.com");
        var (root, issuing) = new CaKeyStore(options, TimeProvider.System).Create(urls);
        using var ca = new CaHierarchy(root, issuing, urls);
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Assert.True(SubscriberKey.TryAccept(new PublicKey(ec), out var key, out _));
        var now = DateTimeOffset.UtcNow;
        var signed = new CertificateIssuer(ca, options).Issue(new CertificateOrder("dave@example.com", "", CertificateProfileName.Dual, key,
            SerialNumber.New(now), now.AddMinutes(-1), now.AddDays(30)));
        using var cert = X509CertificateLoader.LoadCertificate(signed.Der);

        var read = TbsCertificate.FromCertificate(signed.Der).Extensions;
        Assert.Equal(cert.Extensions.Count, read.Count);
        Assert.Contains(read, e => e.Oid!.Value == Oids.FreshestCrl);
        for (var i = 0; i < read.Count; i++)
        {
            Assert.Equal(cert.Extensions[i].GetType(), read[i].GetType());
            Assert.Equal(cert.Extensions[i].Oid!.Value, read[i].Oid!.Value);
            Assert.Equal(cert.Extensions[i].Critical, read[i].Critical);
            Assert.Equal(cert.Extensions[i].RawData, read[i].RawData);
        }
    }

    private static CertPortalOptions Options(string issuingAlgorithm, string cnMode)
    {
        // Creating a CA in memory writes nothing to the data directory.
        var options = new CertPortalOptions { DataDirectory = Path.Combine(Path.GetTempPath(), "certportal-encoder-unused") };
        options.Ca.KeyPassphrase = "encoder-test-passphrase";
        options.Ca.IssuingKeyAlgorithm = issuingAlgorithm;
        options.Ca.RootKeyAlgorithm = issuingAlgorithm.StartsWith("EC", StringComparison.Ordinal) ? "EC-P384" : "RSA-3072";
        if (cnMode == "DisplayName")
        {
            options.Issuance.SubjectCommonName = SubjectCommonName.DisplayName;
            options.Issuance.OrganizationName = "Example Corporation";
            options.Issuance.OrganizationIdentifier = "NTRGB-12345678";
        }
        return options;
    }

    private static byte[] TbsOf(byte[] certificate) =>
        new AsnReader(certificate, AsnEncodingRules.DER).ReadSequence().ReadEncodedValue().ToArray();
}
