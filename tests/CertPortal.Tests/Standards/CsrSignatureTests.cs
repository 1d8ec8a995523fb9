using System.Formats.Asn1;
using System.Net;
using System.Security.Cryptography;
using CertPortal.Authority;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Standards;

/// <summary>A CSR's self-signature is the requester's proof of possession (RFC 2986 §4.2). It is checked with the key
/// read once for the key policy: ECDSA and RSA PKCS#1 v1.5 by the inspector itself, RSA-PSS by .NET's CSR loader (which
/// verifies PSS with a salt as long as the hash).
/// openssl makes every CSR; one damaged copy of each must be refused as an invalid signature, not issued.</summary>
public sealed class CsrSignatureTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Theory]
    [InlineData("ec", "ec_paramgen_curve:P-256", "-sha256")]
    [InlineData("ec", "ec_paramgen_curve:P-384", "-sha384")]
    [InlineData("ec", "ec_paramgen_curve:P-256", "-sha512")]
    [InlineData("rsa:2048", null, "-sha256")]
    [InlineData("rsa:2048", null, "-sha384")]
    [InlineData("rsa:2048", "pss", "-sha256")]
    public async Task A_sound_csr_is_issued_and_a_damaged_signature_or_body_is_refused(string newkey, string? option, string digest)
    {
        var email = $"sig-{Guid.NewGuid():N}@example.test";
        using var dir = new ToolDir("csr-signature");
        string[] keyOptions = newkey == "ec" ? ["-pkeyopt", option!] : option == "pss" ? ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"] : [];
        Tool.Run("openssl", ["req", "-new", "-newkey", newkey, .. keyOptions, digest, "-nodes", "-keyout", dir.File("k.pem"),
            "-subj", $"/CN={email}", "-out", dir.File("r.csr")]).EnsureSuccess();
        var der = Der(File.ReadAllText(dir.File("r.csr")));

        var (signatureStart, signatureEnd) = SignatureBytes(der);
        var badSignature = (byte[])der.Clone();
        badSignature[(signatureStart + signatureEnd) / 2] ^= 0x01;
        await AssertInvalidSignatureAsync(email, badSignature);

        // The signed body changed (a letter of the subject), the signature left as it was.
        var badBody = (byte[])der.Clone();
        var at = IndexOf(badBody, System.Text.Encoding.ASCII.GetBytes(email));
        badBody[at] = (byte)(badBody[at] == (byte)'s' ? 't' : 's');
        await AssertInvalidSignatureAsync(email, badBody);

        var token = await app.CreateTokenAsync(email, "signing");
        Assert.Equal(HttpStatusCode.Created, (await app.PostEnrollmentAsync(token.Token, Pem(der))).StatusCode);
    }

    [Fact]
    public async Task A_signature_algorithm_that_does_not_fit_the_key_or_the_hash_is_refused()
    {
        var email = $"sig-{Guid.NewGuid():N}@example.test";
        var (_, ecCsr) = SubscriberKeyPair.GenerateWithOpenSsl("EC-P256", $"/CN={email}");
        var der = Der(ecCsr);
        // ecdsa-with-SHA256 (1.2.840.10045.4.3.2) -> ecdsa-with-SHA384 (...4.3.3): the signature is over a SHA-256 hash.
        var oid = IndexOf(der, [0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02]);
        var otherHash = (byte[])der.Clone();
        otherHash[oid + 7] = 0x03;
        await AssertInvalidSignatureAsync(email, otherHash);

        // An RSA key whose CSR claims an ECDSA signature.
        var (_, rsaCsr) = SubscriberKeyPair.GenerateWithOpenSsl("RSA-2048", $"/CN={email}");
        var rsa = Der(rsaCsr);
        var claimed = new AsnWriter(AsnEncodingRules.DER);
        using (claimed.PushSequence())
        {
            var reader = new AsnReader(rsa, AsnEncodingRules.DER).ReadSequence();
            claimed.WriteEncodedValue(reader.ReadEncodedValue().Span);
            reader.ReadSequence();
            using (claimed.PushSequence()) claimed.WriteObjectIdentifier(Oids.EcdsaWithSha256);
            claimed.WriteBitString(reader.ReadBitString(out _));
        }
        await AssertInvalidSignatureAsync(email, claimed.Encode());
    }

    private async Task AssertInvalidSignatureAsync(string email, byte[] der)
    {
        var token = await app.CreateTokenAsync(email, "signing");
        var problem = await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, Pem(der)), HttpStatusCode.UnprocessableEntity);
        Assert.Equal("CSR signature invalid.", problem.GetProperty("title").GetString());
    }

    /// <summary>Offsets of the signature BIT STRING's value bytes (after its unused-bits byte).</summary>
    private static (int Start, int End) SignatureBytes(byte[] der)
    {
        var outer = new AsnReader(der, AsnEncodingRules.DER);
        var content = outer.PeekContentBytes();
        var request = outer.ReadSequence();
        var consumed = der.Length - content.Length;
        consumed += request.ReadEncodedValue().Length;
        consumed += request.ReadEncodedValue().Length;
        var signature = request.PeekEncodedValue();
        var value = request.PeekContentBytes();
        var start = consumed + signature.Length - value.Length + 1;
        return (start, consumed + signature.Length);
    }

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (var i = 0; i <= haystack.Length - needle.Length; i++)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        return -1;
    }

    private static byte[] Der(string pem) => PemEncoding.Find(pem) is var f ? Convert.FromBase64String(pem[f.Base64Data]) : [];

    private static string Pem(byte[] der) => PemEncoding.WriteString("CERTIFICATE REQUEST", der);
}
