using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Revocation;

namespace CertPortal.Tests.Api;

/// <summary>Every answer carrying a certificate writes it with <see cref="Pem.Certificate"/>: PEM (RFC 7468, lines of 64
/// characters) with one final line feed.</summary>
public sealed class PemTests
{
    [Fact]
    public void A_certificate_is_written_as_PEM_with_one_final_line_feed()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var now = DateTimeOffset.UtcNow;
        using var cert = new CertificateRequest("CN=pem", key, HashAlgorithmName.SHA256).CreateSelfSigned(now, now.AddDays(1));
        var pem = Pem.Certificate(cert.RawData);
        Assert.Equal(new string(PemEncoding.Write("CERTIFICATE", cert.RawData)) + "\n", pem);
        using var read = X509Certificate2.CreateFromPem(pem);
        Assert.Equal(cert.RawData, read.RawData);

        // Every length of a last line (full or partial, with base64 padding or without), alike.
        for (var n = 1; n <= 200; n++)
        {
            var der = RandomNumberGenerator.GetBytes(n);
            Assert.Equal(new string(PemEncoding.Write("CERTIFICATE", der)) + "\n", Pem.Certificate(der));
        }
    }
}
