using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Standards;

/// <summary>CSR keys are read without OpenSSL's order multiplication (<see cref="EcPublicKeys"/>). The key read must be the
/// key openssl made (same point, verifies openssl's signature, refuses a damaged one), that way of reading must be the one
/// taken on this machine (else the saving is silently gone), and a point off the curve must still give no key.</summary>
public sealed class EcPublicKeyTests
{
    [Fact]
    public void Keys_are_read_by_the_libcrypto_dotnet_runs_on() => Assert.True(EcPublicKeys.ReadsWithoutKeyCheck);

    [Theory]
    [InlineData("prime256v1", "-sha256")]
    [InlineData("secp384r1", "-sha384")]
    public void The_key_read_is_the_key_openssl_made(string curve, string digest)
    {
        using var dir = new ToolDir("ec-public-key");
        Tool.Run("openssl", ["ecparam", "-genkey", "-name", curve, "-noout", "-out", dir.File("k.pem")]).EnsureSuccess();
        Tool.Run("openssl", ["pkey", "-in", dir.File("k.pem"), "-pubout", "-outform", "DER", "-out", dir.File("spki.der")]).EnsureSuccess();
        var data = dir.Write("data", RandomNumberGenerator.GetBytes(300));
        Tool.Run("openssl", ["dgst", digest, "-sign", dir.File("k.pem"), "-out", dir.File("sig"), data]).EnsureSuccess();
        var spki = File.ReadAllBytes(dir.File("spki.der"));
        var signature = File.ReadAllBytes(dir.File("sig"));
        var hash = digest == "-sha256" ? HashAlgorithmName.SHA256 : HashAlgorithmName.SHA384;

        using var key = EcPublicKeys.Read(PublicKey.CreateFromSubjectPublicKeyInfo(spki, out _));
        Assert.NotNull(key);
        Assert.Equal(spki, key.ExportSubjectPublicKeyInfo());
        Assert.True(key.VerifyData(File.ReadAllBytes(data), signature, hash, DSASignatureFormat.Rfc3279DerSequence));
        signature[^1] ^= 0x01;
        Assert.False(key.VerifyData(File.ReadAllBytes(data), signature, hash, DSASignatureFormat.Rfc3279DerSequence));
    }

    [Fact]
    public void A_point_off_the_curve_gives_no_key()
    {
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var spki = ec.ExportSubjectPublicKeyInfo();
        spki[^1] ^= 0x01; // y's last byte: the point leaves the curve
        var key = PublicKey.CreateFromSubjectPublicKeyInfo(spki, out _);
        // OpenSSL's decoder refuses it, and so does .NET's import it then falls back to.
        Assert.ThrowsAny<CryptographicException>(() => EcPublicKeys.Read(key)?.Dispose());
        // Nothing of that refusal is left on this thread for the next OpenSSL call to trip over.
        using var fine = EcPublicKeys.Read(PublicKey.CreateFromSubjectPublicKeyInfo(ec.ExportSubjectPublicKeyInfo(), out _));
        Assert.NotNull(fine);
    }
}
