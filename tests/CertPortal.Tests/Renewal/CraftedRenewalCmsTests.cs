using System.Formats.Asn1;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Renewal;

/// <summary>Renewal requests no honest client makes: signer infos naming odd digest and signature algorithms, odd parameters,
/// and carried certificates that claim an issued serial with keys of every kind. Each is answered 4xx (or, where it is a
/// valid signature by the certificate's own key, renews); nothing a client sends is a 500.</summary>
public sealed class CraftedRenewalCmsTests(OpenRenewalApp app) : IClassFixture<OpenRenewalApp>
{
    private readonly string _run = Guid.NewGuid().ToString("N")[..6];

    [Fact]
    public async Task A_signature_algorithm_the_platform_cannot_verify_is_refused_with_422_not_500()
    {
        var mailbox = $"pq.{_run}@example.com";
        var (current, _) = await app.IssueAsync(mailbox, "signing");
        var csr = CraftedSignerInfos.Der(SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(mailbox));
        // Anyone can send these: a carried certificate with an issued certificate's issuer and serial (both public) and a
        // post-quantum key. SignedCms verifies with the carried certificate, and on OpenSSL before 3.5 threw
        // PlatformNotSupportedException out of CheckSignature: a 500.
        foreach (var (oid, keyLength, signatureLength) in new[] { (CraftedSignerInfos.MLDsa44, 1312, 2420), (CraftedSignerInfos.SlhDsaSha2_128s, 32, 7856) })
        {
            var cms = CraftedSignerInfos.Build(csr, current.CertificatePem, new CraftedSignerInfos.Spec(CraftedSignerInfos.Sha256, null, oid, null,
                _ => new byte[signatureLength], HashAlgorithmName.SHA256, CarriedSpki: CraftedSignerInfos.Spki(oid, null, RandomNumberGenerator.GetBytes(keyLength))));
            var response = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = Convert.ToBase64String(cms) });
            Assert.InRange((int)response.StatusCode, 400, 499);
            var problem = await Http.AssertProblem(response, response.StatusCode);
            // ML-DSA and SLH-DSA came together (OpenSSL 3.5); where they verify, the garbage key is refused as a wrong signer.
            if (!MLDsa.IsSupported)
                Assert.Equal("Unsupported signature algorithm.", problem.GetProperty("title").GetString());
        }
        Assert.Equal("valid", (await app.GetCertificateAsync(current.SerialNumber)).Status);
    }

    [Fact]
    public async Task A_renewal_signed_over_md5_or_sha1_is_refused_though_the_key_is_right()
    {
        var mailbox = $"weak-digest.{_run}@example.com";
        var (current, key) = await app.IssueAsync(mailbox, "signing");
        var csr = CraftedSignerInfos.Der(SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(mailbox));
        using var ecdsa = (ECDsa)key.Load();
        foreach (var (digest, signature, hash) in new[]
                 {
                     (CraftedSignerInfos.Sha1, CraftedSignerInfos.EcdsaSha1, HashAlgorithmName.SHA1),
                     (CraftedSignerInfos.Md5, CraftedSignerInfos.EcdsaSha256, HashAlgorithmName.MD5),
                     (CraftedSignerInfos.Sha256, CraftedSignerInfos.EcdsaSha1, HashAlgorithmName.SHA256),
                 })
        {
            // A real signature by the certificate's own key, over a digest anyone with collisions could have chosen.
            var cms = CraftedSignerInfos.Build(csr, current.CertificatePem, new CraftedSignerInfos.Spec(digest, null, signature, null,
                d => ecdsa.SignData(d, hash, DSASignatureFormat.Rfc3279DerSequence), hash));
            var problem = await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = Convert.ToBase64String(cms) }),
                System.Net.HttpStatusCode.UnprocessableEntity);
            Assert.Equal("Weak digest algorithm.", problem.GetProperty("title").GetString());
        }
        var unchanged = await app.GetCertificateAsync(current.SerialNumber);
        Assert.Equal("valid", unchanged.Status);
    }

    // Encryption: the EC certificate allows keyAgreement only, and its signatures are checked against a stand-in (KeyAgreementCertificates).
    [Theory]
    [InlineData("signing")]
    [InlineData("encryption")]
    public async Task Crafted_signer_infos_and_carried_certificates_never_get_a_5xx(string profile)
    {
        var ec = $"crafted-ec-{profile}.{_run}@example.com";
        var rsa = $"crafted-rsa-{profile}.{_run}@example.com";
        var (ecCert, ecKey) = await app.IssueAsync(ec, profile);
        var (rsaCert, rsaKey) = await app.IssueAsync(rsa, profile, "RSA-3072");
        var answers = new List<string>();
        foreach (var (name, cms) in CraftedSignerInfos.All(ec, ecCert.CertificatePem, ecKey, rsa, rsaCert.CertificatePem, rsaKey))
        {
            var response = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = Convert.ToBase64String(cms) });
            answers.Add($"{(int)response.StatusCode} {name}");
        }
        Assert.All(answers, a => Assert.Matches("^[24]", a));
    }
}

/// <summary>CMS SignedData messages built field by field, so the signer info can name any digest or signature algorithm
/// with any parameters, and still carry a signature made by the certificate's own key.</summary>
public static class CraftedSignerInfos
{
    public const string Md5 = "1.2.840.113549.2.5";
    public const string Sha1 = "1.3.14.3.2.26";
    public const string Sha256 = "2.16.840.1.101.3.4.2.1";
    public const string Sha3_256 = "2.16.840.1.101.3.4.2.8";
    public const string Shake256 = "2.16.840.1.101.3.4.2.12";
    public const string EcdsaSha256 = "1.2.840.10045.4.3.2";
    public const string EcdsaSha1 = "1.2.840.10045.4.1";
    public const string EcPublicKey = "1.2.840.10045.2.1";
    public const string RsaEncryption = "1.2.840.113549.1.1.1";
    public const string RsaSha256 = "1.2.840.113549.1.1.11";
    public const string RsaPss = "1.2.840.113549.1.1.10";
    public const string Mgf1 = "1.2.840.113549.1.1.8";
    public const string DsaSha256 = "2.16.840.1.101.3.4.3.2";
    public const string Dsa = "1.2.840.10040.4.1";
    public const string Ed25519 = "1.3.101.112";
    public const string Unknown = "1.2.3.4.5.6.7";
    public const string MLDsa44 = "2.16.840.1.101.3.4.3.17";
    public const string MLDsa65 = "2.16.840.1.101.3.4.3.18";
    public const string SlhDsaSha2_128s = "2.16.840.1.101.3.4.3.20";

    public sealed record Spec(
        string DigestOid, byte[]? DigestParams, string SignatureOid, byte[]? SignatureParams,
        Func<byte[], byte[]> Sign, HashAlgorithmName MessageDigestHash, bool IncludeDigestInSet = true,
        byte[]? MessageDigestOverride = null, byte[]? SigningTimeValue = null,
        byte[]? CarriedSpki = null, bool JunkCertificate = false);

    public static IEnumerable<(string Name, byte[] Cms)> All(string ecMail, string ecPem, SubscriberKeyPair ecKey, string rsaMail, string rsaPem, SubscriberKeyPair rsaKey)
    {
        var ecCsr = Der(SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(ecMail));
        var rsaCsr = Der(SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(rsaMail));
        var ecdsa = (ECDsa)ecKey.Load();
        var rsa = (RSA)rsaKey.Load();
        byte[] Null() => [0x05, 0x00];
        Func<byte[], byte[]> EcSign(HashAlgorithmName h) => d => ecdsa.SignData(d, h, DSASignatureFormat.Rfc3279DerSequence);
        Func<byte[], byte[]> RsaSign(HashAlgorithmName h, RSASignaturePadding p) => d => rsa.SignData(d, h, p);
        var sha256 = HashAlgorithmName.SHA256;

        (string, byte[]) Ec(string name, Spec s) => (name, Build(ecCsr, ecPem, s));
        (string, byte[]) Rs(string name, Spec s) => (name, Build(rsaCsr, rsaPem, s));

        yield return Ec("ec baseline sha256", new(Sha256, null, EcdsaSha256, null, EcSign(sha256), sha256));
        yield return Ec("ec md5 digest, signature over md5", new(Md5, null, EcdsaSha256, null, EcSign(HashAlgorithmName.MD5), HashAlgorithmName.MD5));
        yield return Ec("ec md5 digest, ecPublicKey sig alg", new(Md5, null, EcPublicKey, null, EcSign(HashAlgorithmName.MD5), HashAlgorithmName.MD5));
        yield return Ec("ec sha1 digest ecdsa-sha1", new(Sha1, null, EcdsaSha1, null, EcSign(HashAlgorithmName.SHA1), HashAlgorithmName.SHA1));
        yield return Ec("ec sha3-256 digest", new(Sha3_256, null, EcPublicKey, null, EcSign(HashAlgorithmName.SHA3_256), HashAlgorithmName.SHA3_256));
        yield return Ec("ec shake256 digest", new(Shake256, null, EcPublicKey, null, EcSign(sha256), sha256));
        yield return Ec("ec unknown digest oid", new(Unknown, null, EcdsaSha256, null, EcSign(sha256), sha256));
        yield return Ec("ec unknown digest oid, ecPublicKey", new(Unknown, null, EcPublicKey, null, EcSign(sha256), sha256));
        yield return Ec("ec unknown signature oid", new(Sha256, null, Unknown, null, EcSign(sha256), sha256));
        yield return Ec("ec digest params garbage", new(Sha256, [0x02, 0x01, 0x07], EcdsaSha256, null, EcSign(sha256), sha256));
        yield return Ec("ec sig params garbage", new(Sha256, null, EcdsaSha256, [0x04, 0x02, 0xff, 0xff], EcSign(sha256), sha256));
        yield return Ec("ec sig params NULL", new(Sha256, null, EcdsaSha256, Null(), EcSign(sha256), sha256));
        yield return Ec("ec signed as rsaEncryption", new(Sha256, null, RsaEncryption, Null(), EcSign(sha256), sha256));
        yield return Ec("ec signed as rsa-sha256", new(Sha256, null, RsaSha256, Null(), EcSign(sha256), sha256));
        yield return Ec("ec signed as rsa-pss", new(Sha256, null, RsaPss, PssParams(Sha256, 32), EcSign(sha256), sha256));
        yield return Ec("ec signed as rsa-pss no params", new(Sha256, null, RsaPss, null, EcSign(sha256), sha256));
        yield return Ec("ec signed as dsa-sha256", new(Sha256, null, DsaSha256, null, EcSign(sha256), sha256));
        yield return Ec("ec signed as dsa", new(Sha256, null, Dsa, null, EcSign(sha256), sha256));
        yield return Ec("ec signed as ed25519", new(Sha256, null, Ed25519, null, EcSign(sha256), sha256));
        yield return Ec("ec signature not DER", new(Sha256, null, EcdsaSha256, null, d => [0x01, 0x02, 0x03], sha256));
        yield return Ec("ec signature empty", new(Sha256, null, EcdsaSha256, null, d => [], sha256));
        yield return Ec("ec signature p1363", new(Sha256, null, EcdsaSha256, null, d => ecdsa.SignData(d, sha256), sha256));
        yield return Ec("ec digest not in set", new(Sha256, null, EcdsaSha256, null, EcSign(sha256), sha256, IncludeDigestInSet: false));
        yield return Ec("ec messageDigest wrong length", new(Sha256, null, EcdsaSha256, null, EcSign(sha256), sha256, MessageDigestOverride: [0x04, 0x01, 0x00]));
        yield return Ec("ec messageDigest not octet string", new(Sha256, null, EcdsaSha256, null, EcSign(sha256), sha256, MessageDigestOverride: [0x02, 0x01, 0x05]));
        yield return Ec("ec messageDigest garbage", new(Sha256, null, EcdsaSha256, null, EcSign(sha256), sha256, MessageDigestOverride: [0x30, 0x03, 0x02, 0x01, 0x00]));
        yield return Ec("ec signingTime garbage", new(Sha256, null, EcdsaSha256, null, EcSign(sha256), sha256, SigningTimeValue: [0x04, 0x01, 0x00]));
        yield return Ec("ec signingTime generalized 1900", new(Sha256, null, EcdsaSha256, null, EcSign(sha256), sha256, SigningTimeValue: GeneralizedTime(new DateTimeOffset(1900, 1, 1, 0, 0, 0, TimeSpan.Zero))));
        yield return Ec("ec signingTime generalized 9999", new(Sha256, null, EcdsaSha256, null, EcSign(sha256), sha256, SigningTimeValue: GeneralizedTime(new DateTimeOffset(9999, 12, 31, 23, 59, 59, TimeSpan.Zero))));
        yield return Ec("ec signingTime utc garbage", new(Sha256, null, EcdsaSha256, null, EcSign(sha256), sha256, SigningTimeValue: [0x17, 0x03, 0x41, 0x42, 0x43]));

        yield return Rs("rsa baseline pkcs1 sha256", new(Sha256, null, RsaSha256, Null(), RsaSign(sha256, RSASignaturePadding.Pkcs1), sha256));
        yield return Rs("rsa md5 digest rsaEncryption", new(Md5, null, RsaEncryption, Null(), RsaSign(HashAlgorithmName.MD5, RSASignaturePadding.Pkcs1), HashAlgorithmName.MD5));
        yield return Rs("rsa sha1 digest rsaEncryption", new(Sha1, null, RsaEncryption, Null(), RsaSign(HashAlgorithmName.SHA1, RSASignaturePadding.Pkcs1), HashAlgorithmName.SHA1));
        yield return Rs("rsa pss sha256", new(Sha256, null, RsaPss, PssParams(Sha256, 32), RsaSign(sha256, RSASignaturePadding.Pss), sha256));
        yield return Rs("rsa pss no params", new(Sha256, null, RsaPss, null, RsaSign(sha256, RSASignaturePadding.Pss), sha256));
        yield return Rs("rsa pss NULL params", new(Sha256, null, RsaPss, Null(), RsaSign(sha256, RSASignaturePadding.Pss), sha256));
        yield return Rs("rsa pss garbage params", new(Sha256, null, RsaPss, [0x02, 0x01, 0x01], RsaSign(sha256, RSASignaturePadding.Pss), sha256));
        yield return Rs("rsa pss empty sequence (sha1 defaults)", new(Sha256, null, RsaPss, [0x30, 0x00], RsaSign(sha256, RSASignaturePadding.Pss), sha256));
        yield return Rs("rsa pss empty seq sha1 digest", new(Sha1, null, RsaPss, [0x30, 0x00], RsaSign(HashAlgorithmName.SHA1, RSASignaturePadding.Pss), HashAlgorithmName.SHA1));
        yield return Rs("rsa pss salt 0", new(Sha256, null, RsaPss, PssParams(Sha256, 0), RsaSign(sha256, RSASignaturePadding.Pss), sha256));
        yield return Rs("rsa pss salt huge", new(Sha256, null, RsaPss, PssParams(Sha256, 100000), RsaSign(sha256, RSASignaturePadding.Pss), sha256));
        yield return Rs("rsa pss salt negative", new(Sha256, null, RsaPss, PssParams(Sha256, -1), RsaSign(sha256, RSASignaturePadding.Pss), sha256));
        yield return Rs("rsa pss hash mismatch", new(Sha256, null, RsaPss, PssParams("2.16.840.1.101.3.4.2.3", 64), RsaSign(sha256, RSASignaturePadding.Pss), sha256));
        yield return Rs("rsa pss hash unknown", new(Sha256, null, RsaPss, PssParams(Unknown, 32), RsaSign(sha256, RSASignaturePadding.Pss), sha256));
        yield return Rs("rsa pss hash md5", new(Md5, null, RsaPss, PssParams(Md5, 16), RsaSign(HashAlgorithmName.MD5, RSASignaturePadding.Pss), HashAlgorithmName.MD5));
        yield return Rs("rsa pss mgf unknown", new(Sha256, null, RsaPss, PssParams(Sha256, 32, mgfOid: Unknown), RsaSign(sha256, RSASignaturePadding.Pss), sha256));
        yield return Rs("rsa pss mgf hash differs", new(Sha256, null, RsaPss, PssParams(Sha256, 32, mgfHash: Sha1), RsaSign(sha256, RSASignaturePadding.Pss), sha256));
        yield return Rs("rsa pss trailer 2", new(Sha256, null, RsaPss, PssParams(Sha256, 32, trailer: 2), RsaSign(sha256, RSASignaturePadding.Pss), sha256));
        yield return Rs("rsa signed as ecdsa", new(Sha256, null, EcdsaSha256, null, RsaSign(sha256, RSASignaturePadding.Pkcs1), sha256));
        yield return Rs("rsa signed as ecPublicKey", new(Sha256, null, EcPublicKey, null, RsaSign(sha256, RSASignaturePadding.Pkcs1), sha256));
        yield return Rs("rsa signed as dsa", new(Sha256, null, DsaSha256, null, RsaSign(sha256, RSASignaturePadding.Pkcs1), sha256));
        yield return Rs("rsa signed as unknown", new(Sha256, null, Unknown, null, RsaSign(sha256, RSASignaturePadding.Pkcs1), sha256));
        yield return Rs("rsa sig params garbage", new(Sha256, null, RsaSha256, [0x04, 0x00], RsaSign(sha256, RSASignaturePadding.Pkcs1), sha256));
        yield return Rs("rsa signature too long", new(Sha256, null, RsaSha256, Null(), d => new byte[4096], sha256));
        yield return Rs("rsa signature empty", new(Sha256, null, RsaSha256, Null(), d => [], sha256));
        foreach (var (name, spki, sigOid, sigParams, sign) in ForgedKeys(ecdsa, rsa))
        {
            yield return Ec("forged cert " + name, new(Sha256, null, sigOid, sigParams, sign, sha256, CarriedSpki: spki));
        }
        yield return Ec("ec junk certificate", new(Sha256, null, EcdsaSha256, null, EcSign(sha256), sha256, JunkCertificate: true));
        yield return Rs("rsa signature one byte", new(Sha256, null, RsaPss, PssParams(Sha256, 32), d => [1], sha256));
    }

    private static IEnumerable<(string, byte[], string, byte[]?, Func<byte[], byte[]>)> ForgedKeys(ECDsa ecdsa, RSA rsa)
    {
        var sha256 = HashAlgorithmName.SHA256;
        byte[] Null() => [0x05, 0x00];
        byte[] Garbage(byte[] d) => RandomNumberGenerator.GetBytes(64);
        using (var dsa = DSA.Create(2048))
        {
            var spki = dsa.ExportSubjectPublicKeyInfo();
            var sig = (Func<byte[], byte[]>)(d => dsa.SignData(d, sha256, DSASignatureFormat.Rfc3279DerSequence));
            yield return ("dsa-2048 dsa-sha256 real", spki, DsaSha256, null, sig);
            yield return ("dsa-2048 dsa (no hash) sig", spki, Dsa, null, sig);
            yield return ("dsa-2048 ecdsa sig", spki, EcdsaSha256, null, sig);
        }
        using (var dsa = DSA.Create(1024))
            yield return ("dsa-1024 dsa-sha256", dsa.ExportSubjectPublicKeyInfo(), DsaSha256, null, Garbage);
        yield return ("dsa tiny params", Spki(Dsa, Seq(w => { w.WriteInteger(23); w.WriteInteger(11); w.WriteInteger(2); }), Int(5)), DsaSha256, null, Garbage);
        yield return ("dsa q larger than p", Spki(Dsa, Seq(w => { w.WriteInteger(11); w.WriteInteger(23); w.WriteInteger(2); }), Int(5)), DsaSha256, null, Garbage);
        yield return ("dsa zero params", Spki(Dsa, Seq(w => { w.WriteInteger(0); w.WriteInteger(0); w.WriteInteger(0); }), Int(0)), DsaSha256, null, Garbage);
        yield return ("dsa no params", Spki(Dsa, null, Int(5)), DsaSha256, null, Garbage);
        yield return ("dsa key not integer", Spki(Dsa, Seq(w => { w.WriteInteger(23); w.WriteInteger(11); w.WriteInteger(2); }), [0x04, 0x00]), DsaSha256, null, Garbage);
        yield return ("ec unknown curve", Spki(EcPublicKey, Oid(Unknown), [0x04, .. RandomNumberGenerator.GetBytes(64)]), EcdsaSha256, null, Garbage);
        yield return ("ec no params", Spki(EcPublicKey, null, [0x04, .. RandomNumberGenerator.GetBytes(64)]), EcdsaSha256, null, Garbage);
        yield return ("ec point not on curve", Spki(EcPublicKey, Oid("1.2.840.10045.3.1.7"), [0x04, .. RandomNumberGenerator.GetBytes(64)]), EcdsaSha256, null, Garbage);
        yield return ("ec point short", Spki(EcPublicKey, Oid("1.2.840.10045.3.1.7"), [0x04, 1, 2]), EcdsaSha256, null, Garbage);
        yield return ("ec point empty", Spki(EcPublicKey, Oid("1.2.840.10045.3.1.7"), []), EcdsaSha256, null, Garbage);
        yield return ("ec point infinity", Spki(EcPublicKey, Oid("1.2.840.10045.3.1.7"), [0x00]), EcdsaSha256, null, Garbage);
        var compressed = ecdsa.ExportParameters(false).Q;
        yield return ("ec point compressed", Spki(EcPublicKey, Oid("1.2.840.10045.3.1.7"), [(byte)(2 + (compressed.Y![31] & 1)), .. compressed.X!]), EcdsaSha256, null,
            d => ecdsa.SignData(d, sha256, DSASignatureFormat.Rfc3279DerSequence));
        using (var brainpool = ECDsa.Create(ECCurve.NamedCurves.brainpoolP256r1))
            yield return ("ec brainpool real", brainpool.ExportSubjectPublicKeyInfo(), EcdsaSha256, null, d => brainpool.SignData(d, sha256, DSASignatureFormat.Rfc3279DerSequence));
        using (var explicitKey = ECDsa.Create())
        {
            explicitKey.ImportParameters(ecdsa.ExportExplicitParameters(false));
            yield return ("ec explicit curve", explicitKey.ExportSubjectPublicKeyInfo(), EcdsaSha256, null, d => ecdsa.SignData(d, sha256, DSASignatureFormat.Rfc3279DerSequence));
            yield return ("ec explicit curve, garbage params", Spki(EcPublicKey, Seq(w => { w.WriteInteger(1); using (w.PushSequence()) { w.WriteObjectIdentifier("1.2.840.10045.1.1"); w.WriteInteger(4); } }),
                [0x04, .. RandomNumberGenerator.GetBytes(64)]), EcdsaSha256, null, Garbage);
            yield return ("ec explicit curve, characteristic-two", Spki(EcPublicKey, Seq(w => { w.WriteInteger(1); using (w.PushSequence()) { w.WriteObjectIdentifier("1.2.840.10045.1.2"); w.WriteInteger(4); } }),
                [0x04, .. RandomNumberGenerator.GetBytes(64)]), EcdsaSha256, null, Garbage);
        }
        yield return ("ec curve oid secp256k1", Spki(EcPublicKey, Oid("1.3.132.0.10"), [0x04, .. RandomNumberGenerator.GetBytes(64)]), EcdsaSha256, null, Garbage);
        yield return ("rsa exponent 1", Spki(RsaEncryption, Null(), Seq(w => { w.WriteInteger(new System.Numerics.BigInteger(RandomNumberGenerator.GetBytes(256), isUnsigned: true, isBigEndian: true)); w.WriteInteger(1); })), RsaSha256, Null(), Garbage);
        yield return ("rsa exponent even", Spki(RsaEncryption, Null(), Seq(w => { w.WriteInteger(new System.Numerics.BigInteger(RandomNumberGenerator.GetBytes(256), isUnsigned: true, isBigEndian: true)); w.WriteInteger(4); })), RsaSha256, Null(), Garbage);
        yield return ("rsa modulus 16 bits", Spki(RsaEncryption, Null(), Seq(w => { w.WriteInteger(65521); w.WriteInteger(65537); })), RsaSha256, Null(), d => [1, 2]);
        yield return ("rsa modulus 0", Spki(RsaEncryption, Null(), Seq(w => { w.WriteInteger(0); w.WriteInteger(65537); })), RsaSha256, Null(), d => [0]);
        yield return ("rsa modulus negative", Spki(RsaEncryption, Null(), Seq(w => { w.WriteInteger(-12345); w.WriteInteger(65537); })), RsaSha256, Null(), Garbage);
        yield return ("rsa exponent huge", Spki(RsaEncryption, Null(), Seq(w => { w.WriteInteger(new System.Numerics.BigInteger(RandomNumberGenerator.GetBytes(256), isUnsigned: true, isBigEndian: true)); w.WriteInteger(new System.Numerics.BigInteger(RandomNumberGenerator.GetBytes(512), isUnsigned: true, isBigEndian: true)); })), RsaSha256, Null(), Garbage);
        yield return ("rsa 16384-bit modulus", Spki(RsaEncryption, Null(), Seq(w => { w.WriteInteger(new System.Numerics.BigInteger([.. RandomNumberGenerator.GetBytes(2047), 1], isUnsigned: true, isBigEndian: true)); w.WriteInteger(65537); })), RsaSha256, Null(), d => new byte[2048]);
        yield return ("rsa key garbage", Spki(RsaEncryption, Null(), [0x01, 0x02]), RsaSha256, Null(), Garbage);
        yield return ("rsa key no params", Spki(RsaEncryption, null, rsa.ExportRSAPublicKey()), RsaSha256, Null(), Garbage);
        yield return ("rsa-pss key oid", Spki(RsaPss, null, rsa.ExportRSAPublicKey()), RsaPss, PssParams(Sha256, 32), Garbage);
        yield return ("rsa-pss key oid with params", Spki(RsaPss, PssParams(Sha256, 32), rsa.ExportRSAPublicKey()), RsaPss, PssParams(Sha256, 32), d => rsa.SignData(d, sha256, RSASignaturePadding.Pss));
        yield return ("rsa key, pss sig real", rsa.ExportSubjectPublicKeyInfo(), RsaPss, PssParams(Sha256, 32), d => rsa.SignData(d, sha256, RSASignaturePadding.Pss));
        yield return ("ed25519 key", Spki(Ed25519, null, RandomNumberGenerator.GetBytes(32)), Ed25519, null, Garbage);
        yield return ("ed25519 key, ecdsa sig", Spki(Ed25519, null, RandomNumberGenerator.GetBytes(32)), EcdsaSha256, null, Garbage);
        yield return ("x25519 key, rsa sig", Spki("1.3.101.110", null, RandomNumberGenerator.GetBytes(32)), RsaSha256, Null(), Garbage);
        yield return ("unknown key, dsa sig", Spki(Unknown, null, RandomNumberGenerator.GetBytes(32)), DsaSha256, null, Garbage);
        yield return ("ml-dsa-44 key oid", Spki(MLDsa44, null, RandomNumberGenerator.GetBytes(1312)), MLDsa44, null, d => new byte[2420]);
        yield return ("slh-dsa key oid", Spki(SlhDsaSha2_128s, null, RandomNumberGenerator.GetBytes(32)), SlhDsaSha2_128s, null, d => new byte[7856]);
        yield return ("ec certificate, ml-dsa signature", ecdsa.ExportSubjectPublicKeyInfo(), MLDsa44, null, d => new byte[2420]);
        yield return ("ml-dsa-44 key garbage len", Spki(MLDsa44, null, RandomNumberGenerator.GetBytes(10)), MLDsa44, null, d => new byte[10]);
        yield return ("ml-dsa-65 with NULL parameters", Spki(MLDsa65, null, RandomNumberGenerator.GetBytes(1952)), MLDsa65, [0x05, 0x00], d => new byte[3309]);
    }

    public static byte[] Spki(string oid, byte[]? parameters, byte[] key)
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            AlgorithmIdentifier(w, oid, parameters);
            w.WriteBitString(key);
        }
        return w.Encode();
    }

    private static byte[] Seq(Action<AsnWriter> body)
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence()) body(w);
        return w.Encode();
    }

    private static byte[] Int(int value)
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        w.WriteInteger(value);
        return w.Encode();
    }

    /// <summary>The certificate with its public key replaced (the CA's signature no longer matches; nothing here checks it).</summary>
    private static byte[] WithKey(byte[] certificate, byte[] spki)
    {
        var outer = new AsnReader(certificate, AsnEncodingRules.DER).ReadSequence();
        var tbs = outer.ReadSequence();
        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            using (w.PushSequence())
            {
                if (tbs.PeekTag().HasSameClassAndValue(new Asn1Tag(TagClass.ContextSpecific, 0))) w.WriteEncodedValue(tbs.ReadEncodedValue().Span);
                for (var i = 0; i < 5; i++) w.WriteEncodedValue(tbs.ReadEncodedValue().Span); // serial, signature, issuer, validity, subject
                tbs.ReadEncodedValue();
                w.WriteEncodedValue(spki);
                while (tbs.HasData) w.WriteEncodedValue(tbs.ReadEncodedValue().Span);
            }
            while (outer.HasData) w.WriteEncodedValue(outer.ReadEncodedValue().Span);
        }
        return w.Encode();
    }

    public static byte[] Der(string pem) => Convert.FromBase64String(pem[PemEncoding.Find(pem).Base64Data]);

    public static byte[] GeneralizedTime(DateTimeOffset t)
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        w.WriteGeneralizedTime(t);
        return w.Encode();
    }

    public static byte[] PssParams(string hashOid, int salt, string mgfOid = Mgf1, string? mgfHash = null, int trailer = 1)
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 0)))
            using (w.PushSequence()) w.WriteObjectIdentifier(hashOid);
            using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 1)))
            using (w.PushSequence())
            {
                w.WriteObjectIdentifier(mgfOid);
                using (w.PushSequence()) w.WriteObjectIdentifier(mgfHash ?? hashOid);
            }
            using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 2))) w.WriteInteger(salt);
            if (trailer != 1) using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 3))) w.WriteInteger(trailer);
        }
        return w.Encode();
    }

    private static void AlgorithmIdentifier(AsnWriter w, string oid, byte[]? parameters)
    {
        using (w.PushSequence())
        {
            w.WriteObjectIdentifier(oid);
            if (parameters is not null) w.WriteEncodedValue(parameters);
        }
    }

    private static void Attribute(AsnWriter w, string oid, byte[] value)
    {
        using (w.PushSequence())
        {
            w.WriteObjectIdentifier(oid);
            using (w.PushSetOf()) w.WriteEncodedValue(value);
        }
    }

    /// <summary>ContentInfo(SignedData) over <paramref name="content"/>, the signer named by issuer and serial, the
    /// certificate carried, signed attributes contentType, messageDigest and signingTime.</summary>
    public static byte[] Build(byte[] content, string certificatePem, Spec s)
    {
        using var certificate = X509Certificate2.CreateFromPem(certificatePem);
        var tbs = new AsnReader(certificate.RawData, AsnEncodingRules.DER).ReadSequence().ReadSequence();
        if (tbs.PeekTag().HasSameClassAndValue(new Asn1Tag(TagClass.ContextSpecific, 0))) tbs.ReadEncodedValue();
        var serial = tbs.ReadEncodedValue().ToArray();

        var attrs = new AsnWriter(AsnEncodingRules.DER);
        using (attrs.PushSetOf())
        {
            Attribute(attrs, "1.2.840.113549.1.9.3", Oid("1.2.840.113549.1.7.1"));
            var md = new AsnWriter(AsnEncodingRules.DER);
            md.WriteOctetString(Hash(s.MessageDigestHash, content));
            Attribute(attrs, "1.2.840.113549.1.9.4", s.MessageDigestOverride ?? md.Encode());
            var st = new AsnWriter(AsnEncodingRules.DER);
            st.WriteUtcTime(DateTimeOffset.UtcNow);
            Attribute(attrs, "1.2.840.113549.1.9.5", s.SigningTimeValue ?? st.Encode());
        }
        var signedAttrs = attrs.Encode();
        var signature = s.Sign(signedAttrs);

        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            w.WriteObjectIdentifier("1.2.840.113549.1.7.2");
            using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 0, isConstructed: true)))
            using (w.PushSequence())
            {
                w.WriteInteger(1);
                using (w.PushSetOf())
                    if (s.IncludeDigestInSet) AlgorithmIdentifier(w, s.DigestOid, s.DigestParams);
                using (w.PushSequence())
                {
                    w.WriteObjectIdentifier("1.2.840.113549.1.7.1");
                    using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 0, isConstructed: true))) w.WriteOctetString(content);
                }
                using (w.PushSetOf(new Asn1Tag(TagClass.ContextSpecific, 0, isConstructed: true)))
                {
                    w.WriteEncodedValue(s.CarriedSpki is null ? certificate.RawData : WithKey(certificate.RawData, s.CarriedSpki));
                    if (s.JunkCertificate) w.WriteEncodedValue([0x30, 0x03, 0x02, 0x01, 0x00]);
                }
                using (w.PushSetOf())
                using (w.PushSequence())
                {
                    w.WriteInteger(1);
                    using (w.PushSequence())
                    {
                        w.WriteEncodedValue(certificate.IssuerName.RawData);
                        w.WriteEncodedValue(serial);
                    }
                    AlgorithmIdentifier(w, s.DigestOid, s.DigestParams);
                    // [0] IMPLICIT: the SET's tag replaced, its contents as signed.
                    var implicitAttrs = (byte[])signedAttrs.Clone();
                    implicitAttrs[0] = 0xA0;
                    w.WriteEncodedValue(implicitAttrs);
                    AlgorithmIdentifier(w, s.SignatureOid, s.SignatureParams);
                    w.WriteOctetString(signature);
                }
            }
        }
        return w.Encode();
    }

    private static byte[] Oid(string oid)
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        w.WriteObjectIdentifier(oid);
        return w.Encode();
    }

    // Weak hashes on purpose: messages a hostile or old client could send.
    private static byte[] Hash(HashAlgorithmName name, byte[] data) => CryptographicOperations.HashData(name, data);
}
