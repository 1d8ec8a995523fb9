using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Standards;

/// <summary>CSR keys are read without OpenSSL's order multiplication, into pooled libcrypto keys (<see cref="EcPublicKeys"/>).
/// The key read must be the key openssl made (verifies openssl's signature, refuses a damaged one), that way of reading must
/// be the one taken on this machine (else the saving is silently gone), a point off the curve must still give no key, and a
/// pooled key must hold the point it was last given, whichever thread gave it.</summary>
public sealed class EcPublicKeyTests
{
    [Fact]
    public void Keys_are_read_by_the_libcrypto_dotnet_runs_on() => Assert.True(EcPublicKeys.ReadsWithoutKeyCheck);

    [Theory]
    [InlineData("prime256v1", "-sha256", Oids.CurveP256)]
    [InlineData("secp384r1", "-sha384", Oids.CurveP384)]
    public void The_key_read_is_the_key_openssl_made(string curve, string digest, string curveOid)
    {
        using var dir = new ToolDir("ec-public-key");
        Tool.Run("openssl", ["ecparam", "-genkey", "-name", curve, "-noout", "-out", dir.File("k.pem")]).EnsureSuccess();
        Tool.Run("openssl", ["pkey", "-in", dir.File("k.pem"), "-pubout", "-outform", "DER", "-out", dir.File("spki.der")]).EnsureSuccess();
        var data = dir.Write("data", RandomNumberGenerator.GetBytes(300));
        Tool.Run("openssl", ["dgst", digest, "-sign", dir.File("k.pem"), "-out", dir.File("sig"), data]).EnsureSuccess();
        var spki = File.ReadAllBytes(dir.File("spki.der"));
        var signature = File.ReadAllBytes(dir.File("sig"));
        var hash = digest == "-sha256" ? HashAlgorithmName.SHA256 : HashAlgorithmName.SHA384;

        using var key = EcPublicKeys.Read(PublicKey.CreateFromSubjectPublicKeyInfo(spki, out _), curveOid);
        Assert.NotNull(key);
        Assert.True(key.VerifyData(File.ReadAllBytes(data), signature, hash));
        // Not DER any more (a byte after the signature's SEQUENCE), then a changed signature: both refused.
        Assert.False(key.VerifyData(File.ReadAllBytes(data), [.. signature, 0x00], hash));
        signature[^1] ^= 0x01;
        Assert.False(key.VerifyData(File.ReadAllBytes(data), signature, hash));
    }

    [Fact]
    public void A_point_off_the_curve_gives_no_key()
    {
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var spki = ec.ExportSubjectPublicKeyInfo();
        spki[^1] ^= 0x01; // y's last byte: the point leaves the curve
        var key = PublicKey.CreateFromSubjectPublicKeyInfo(spki, out _);
        // OpenSSL's decoder refuses it, and so does .NET's import it then falls back to.
        Assert.ThrowsAny<CryptographicException>(() => EcPublicKeys.Read(key, Oids.CurveP256)?.Dispose());
        // Nothing of that refusal is left on this thread for the next OpenSSL call to trip over.
        var data = RandomNumberGenerator.GetBytes(100);
        using var fine = EcPublicKeys.Read(PublicKey.CreateFromSubjectPublicKeyInfo(ec.ExportSubjectPublicKeyInfo(), out _), Oids.CurveP256);
        Assert.NotNull(fine);
        Assert.True(fine.VerifyData(data, ec.SignData(data, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence), HashAlgorithmName.SHA256));
    }

    [Fact]
    public void A_pooled_key_verifies_for_the_point_it_was_last_given_on_any_thread()
    {
        var data = RandomNumberGenerator.GetBytes(100);
        var signers = Enumerable.Range(0, 40).Select(_ => ECDsa.Create(ECCurve.NamedCurves.nistP256)).ToArray();
        var keys = signers.Select(s => PublicKey.CreateFromSubjectPublicKeyInfo(s.ExportSubjectPublicKeyInfo(), out _)).ToArray();
        var signatures = signers.Select(s => s.SignData(data, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence)).ToArray();
        var mismatches = 0;
        // Eight threads read the keys in different orders, so every pooled key passes through many points and threads.
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, t =>
        {
            for (var round = 0; round < 5 * keys.Length; round++)
            {
                var i = (round * (t + 1) + t) % keys.Length;
                using var key = EcPublicKeys.Read(keys[i], Oids.CurveP256)!;
                if (!key.VerifyData(data, signatures[i], HashAlgorithmName.SHA256)
                    || key.VerifyData(data, signatures[(i + 1) % keys.Length], HashAlgorithmName.SHA256))
                    Interlocked.Increment(ref mismatches);
            }
        });
        Assert.Equal(0, mismatches);
        foreach (var s in signers) s.Dispose();
    }

    /// <summary>SubscriberKey.TryAccept leaves the coordinates' range and the curve equation to the reader and names a refused
    /// point's fault from the managed check afterwards: each fault is still refused by name, before any key is made.</summary>
    [Theory]
    [InlineData("off the curve", "not a point on its curve")]
    [InlineData("x = p", "coordinates are out of range")]
    [InlineData("compressed", "must be an uncompressed point")]
    [InlineData("one byte short", "an uncompressed point on this curve has 65")]
    [InlineData("infinity", "must be an uncompressed point")]
    public void A_refused_point_is_named_by_its_fault(string fault, string named)
    {
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var point = ec.ExportParameters(false).Q;
        byte[] encoded = fault switch
        {
            "off the curve" => [0x04, .. point.X!, .. point.Y![..^1], (byte)(point.Y![^1] ^ 0x01)],
            "x = p" => [0x04, .. Convert.FromHexString("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff"), .. point.Y!],
            "compressed" => [(byte)(0x02 | (point.Y![^1] & 1)), .. point.X!],
            "one byte short" => [0x04, .. point.X!, .. point.Y![..^1]],
            "infinity" => [0x00],
            _ => throw new ArgumentOutOfRangeException(nameof(fault)),
        };
        Assert.False(SubscriberKey.TryAccept(P256Key(encoded), out _, out var error));
        Assert.Contains(named, error);
    }

    [Fact]
    public void An_accepted_key_carries_the_hash_of_its_subject_public_key_info()
    {
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var rsa = RSA.Create(2048);
        foreach (var spki in new[] { ec.ExportSubjectPublicKeyInfo(), rsa.ExportSubjectPublicKeyInfo() })
        {
            var publicKey = PublicKey.CreateFromSubjectPublicKeyInfo(spki, out _);
            Assert.True(SubscriberKey.TryAccept(publicKey, out var key, out _));
            Assert.Equal(Convert.ToHexString(SHA256.HashData(spki)), key.SpkiSha256);
            Assert.Equal(SubscriberKey.SpkiHash(publicKey), key.SpkiSha256);
        }
    }

    private static PublicKey P256Key(byte[] encodedPoint)
    {
        var w = new System.Formats.Asn1.AsnWriter(System.Formats.Asn1.AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            using (w.PushSequence())
            {
                w.WriteObjectIdentifier(Oids.EcPublicKey);
                w.WriteObjectIdentifier(Oids.CurveP256);
            }
            w.WriteBitString(encodedPoint);
        }
        return PublicKey.CreateFromSubjectPublicKeyInfo(w.Encode(), out _);
    }
}
