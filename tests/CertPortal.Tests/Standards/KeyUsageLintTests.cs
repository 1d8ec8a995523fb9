using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;

namespace CertPortal.Tests.Standards;

/// <summary>The linter reads keyUsage's BIT STRING itself (<see cref="CertificateLinter.KeyUsages"/>), not through .NET's
/// extension type: it must read every value as .NET does, refuse what is not DER, and still refuse a certificate whose key
/// usage does not fit the profile and the key.</summary>
public sealed class KeyUsageLintTests
{
    private static readonly X509KeyUsageFlags[] Bits =
    [
        X509KeyUsageFlags.DigitalSignature, X509KeyUsageFlags.NonRepudiation, X509KeyUsageFlags.KeyEncipherment,
        X509KeyUsageFlags.DataEncipherment, X509KeyUsageFlags.KeyAgreement, X509KeyUsageFlags.KeyCertSign,
        X509KeyUsageFlags.CrlSign, X509KeyUsageFlags.EncipherOnly, X509KeyUsageFlags.DecipherOnly,
    ];

    [Fact]
    public void Every_key_usage_is_read_as_dotnet_reads_it()
    {
        for (var combination = 0; combination < 1 << Bits.Length; combination++)
        {
            var flags = X509KeyUsageFlags.None;
            for (var bit = 0; bit < Bits.Length; bit++)
                if ((combination & 1 << bit) != 0) flags |= Bits[bit];
            var extension = new X509KeyUsageExtension(flags, critical: true);
            Assert.Equal(extension.KeyUsages, CertificateLinter.KeyUsages(extension.RawData));
            Assert.Equal(flags, CertificateLinter.KeyUsages(extension.RawData));
        }
    }

    [Fact]
    public void A_key_usage_that_is_not_der_is_refused()
    {
        // digitalSignature with a zero byte left after it, and with a set bit among the unused ones.
        Assert.ThrowsAny<AsnContentException>(() => CertificateLinter.KeyUsages([0x03, 0x03, 0x07, 0x80, 0x00]));
        Assert.ThrowsAny<AsnContentException>(() => CertificateLinter.KeyUsages([0x03, 0x02, 0x07, 0x81]));
        Assert.ThrowsAny<AsnContentException>(() => CertificateLinter.KeyUsages([0x03, 0x02, 0x07, 0x80, 0x00]));
    }

    [Fact]
    public void A_key_usage_that_does_not_fit_the_profile_and_the_key_is_refused()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("E=ku@example.test, CN=ku@example.test", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, critical: true));
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddDays(1));
        Assert.True(SubscriberKey.TryAccept(cert.PublicKey, out var accepted, out _));
        var order = new CertificateOrder("ku@example.test", "", CertificateProfileName.Signing, accepted,
            [1, 2, 3, 4, 5, 6, 7, 8, 9], DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddDays(1));
        var problems = CertificateLinter.Lint(cert, order, new CertPortalOptions());
        Assert.Contains("keyUsage KeyEncipherment, DigitalSignature does not match the Signing profile", problems);
        Assert.Contains("keyEncipherment on an EC key", problems);
    }

    /// <summary>What an issuer cut to an ended CA's notAfter would sign (EnrollmentService refuses before that: IssuingCaEndTests).</summary>
    [Fact]
    public void A_certificate_that_ends_when_it_begins_is_refused()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("E=when@example.test, CN=when@example.test", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        var at = DateTimeOffset.UtcNow;
        using var cert = request.CreateSelfSigned(at, at);
        Assert.True(SubscriberKey.TryAccept(cert.PublicKey, out var accepted, out _));
        var order = new CertificateOrder("when@example.test", "", CertificateProfileName.Signing, accepted, [1, 2, 3, 4, 5, 6, 7, 8, 9], at, at);
        Assert.Contains("validity ends before it begins", CertificateLinter.Lint(cert, order, new CertPortalOptions()));
    }
}
