using System.Formats.Asn1;
using System.Net;
using System.Security.Cryptography;
using CertPortal.Authority;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Standards;

/// <summary>CSRs .NET cannot parse (unknown or weak signature algorithms, corrupted curve and algorithm
/// OIDs, damaged DER) are the client's mistake: 422 problem+json naming it, never a 500.</summary>
public sealed class HostileCsrTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    private const string Email = "hostile@example.test";

    [Theory]
    [InlineData("-md5", "MD5")]
    [InlineData("-sha1", "SHA-1")]
    public async Task Csrs_signed_with_broken_hashes_are_refused_by_name(string digest, string named)
    {
        using var dir = new ToolDir("weak-csr");
        Tool.Run("openssl", ["req", "-new", "-newkey", "rsa:2048", digest, "-nodes", "-keyout", dir.File("k.pem"),
            "-subj", $"/CN={Email}", "-out", dir.File("r.csr")]).EnsureSuccess();
        var token = await app.CreateTokenAsync(Email, "signing");
        var problem = await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, File.ReadAllText(dir.File("r.csr"))),
            HttpStatusCode.UnprocessableEntity);
        Assert.Contains(named, problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task A_csr_with_a_corrupted_curve_oid_is_refused_as_an_unsupported_curve()
    {
        var (_, csr) = SubscriberKeyPair.GenerateWithOpenSsl("EC-P256", $"/CN={Email}");
        var der = Der(csr);
        var curve = OidOffsets(der).Single(o => o.Oid == Oids.CurveP256);
        der[curve.LastByte] = 0x09; // 1.2.840.10045.3.1.9: no such curve
        var token = await app.CreateTokenAsync(Email, "signing");
        var problem = await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, Pem(der)), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("P-256", problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task A_csr_with_an_unknown_key_algorithm_is_refused()
    {
        var (_, csr) = SubscriberKeyPair.GenerateWithOpenSsl("EC-P256", $"/CN={Email}");
        var der = Der(csr);
        // id-ecPublicKey 1.2.840.10045.2.1 -> 1.2.840.10045.2.2: .NET throws NotSupportedException for it.
        der[OidOffsets(der).Single(o => o.Oid == Oids.EcPublicKey).LastByte] = 0x02;
        var token = await app.CreateTokenAsync(Email, "signing");
        var problem = await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, Pem(der)), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("key algorithm", problem.GetProperty("detail").GetString(), StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The CSR loader keeps the subject as bytes; it is decoded only when the mailboxes it names are read, after the
    /// signature check. A correctly signed CSR whose subject is not a valid name answered 500 (anonymously, with an ECDSA issuer,
    /// whose claim path inspects the CSR first).</summary>
    [Theory]
    [InlineData("an INTEGER for an RDN's attribute")]
    [InlineData("an empty RDN")]
    [InlineData("an odd-length BMPString")]
    [InlineData("bad UTF-8")]
    public async Task A_signed_csr_whose_subject_is_not_a_valid_name_is_refused_and_the_token_stays_usable(string damage)
    {
        var subject = new AsnWriter(AsnEncodingRules.DER);
        using (subject.PushSequence())
        using (subject.PushSetOf())
        {
            switch (damage)
            {
                case "an INTEGER for an RDN's attribute":
                    subject.WriteInteger(1);
                    break;
                case "an empty RDN":
                    break;
                default:
                    using (subject.PushSequence())
                    {
                        subject.WriteObjectIdentifier(Oids.CommonName);
                        // Written raw: AsnWriter would not write either. BMPString (0x1E) of 3 bytes; UTF8String (0x0C) of a bad sequence.
                        subject.WriteEncodedValue(damage == "bad UTF-8" ? [0x0C, 0x03, 0x61, 0xC3, 0x28] : [0x1E, 0x03, 0x00, 0x61, 0x00]);
                    }
                    break;
            }
        }
        var subjectDer = subject.Encode();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var token = await app.CreateTokenAsync(Email, "signing");
        var problem = await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, Pem(SignedCsr(subjectDer, key))),
            HttpStatusCode.UnprocessableEntity);
        Assert.Contains("subject", problem.GetProperty("detail").GetString());
        await app.EnrollAsync(token.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(Email));
    }

    /// <summary>PKCS#10 (RFC 2986 §4) with the subject's bytes as given, signed with ECDSA-SHA256.</summary>
    private static byte[] SignedCsr(byte[] subjectDer, ECDsa key)
    {
        var info = new AsnWriter(AsnEncodingRules.DER);
        using (info.PushSequence())
        {
            info.WriteInteger(0);
            info.WriteEncodedValue(subjectDer);
            info.WriteEncodedValue(key.ExportSubjectPublicKeyInfo());
            using (info.PushSetOf(new Asn1Tag(TagClass.ContextSpecific, 0, isConstructed: true))) { }
        }
        var infoDer = info.Encode();
        var csr = new AsnWriter(AsnEncodingRules.DER);
        using (csr.PushSequence())
        {
            csr.WriteEncodedValue(infoDer);
            using (csr.PushSequence()) csr.WriteObjectIdentifier("1.2.840.10045.4.3.2"); // ecdsa-with-SHA256
            csr.WriteBitString(key.SignData(infoDer, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));
        }
        return csr.Encode();
    }

    /// <summary>Hundreds of damaged CSRs from openssl-made RSA and EC requests: every OID corrupted several
    /// ways, every byte of the EC requests flipped, truncations. One token serves them all, because a refused
    /// CSR leaves it unspent.</summary>
    [Fact]
    public async Task A_sweep_of_damaged_csrs_finds_no_server_error()
    {
        var originals = new[]
        {
            Der(SubscriberKeyPair.GenerateWithOpenSsl("EC-P256", $"/CN={Email}").CsrPem),
            Der(SubscriberKeyPair.GenerateWithOpenSsl("RSA-2048", $"/CN={Email}").CsrPem),
            Der(SubscriberKeyPair.GenerateWithOpenSsl("EC-P384", $"/CN={Email}").CsrPem),
        };
        var hostile = new List<(string Name, string Pem)>();
        foreach (var (original, n) in originals.Select((d, n) => (d, n)))
        {
            foreach (var oid in OidOffsets(original))
                foreach (var value in new byte[] { 0x00, 0x7F, 0x80, 0xFF })
                {
                    var d = (byte[])original.Clone();
                    d[oid.LastByte] = value; // 0x80/0xFF leave the OID's last sub-identifier unterminated
                    hostile.Add(($"csr {n}: OID {oid.Oid} ends in {value:x2}", Pem(d)));
                }
            foreach (var length in new[] { 1, 2, 10, original.Length / 3, original.Length / 2, original.Length - 1 })
                hostile.Add(($"csr {n}: truncated to {length}", Pem(original[..length])));
            hostile.Add(($"csr {n}: trailing bytes", Pem([.. original, 0x00, 0x00])));
        }
        foreach (var ec in new[] { originals[0], originals[2] })
            for (var i = 0; i < ec.Length; i++)
            {
                var d = (byte[])ec.Clone();
                d[i] ^= 0xFF;
                hostile.Add(($"EC-{ec.Length} csr: byte {i} flipped", Pem(d)));
            }
        hostile.Add(("wrong PEM label", PemEncoding.WriteString("CERTIFICATE", originals[0])));
        hostile.Add(("PEM of nothing", "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----"));
        hostile.Add(("nested sequences", PemEncoding.WriteString("CERTIFICATE REQUEST", Nested(2000))));

        Assert.True(hostile.Count >= 500, $"only {hostile.Count} CSRs");
        var token = await app.CreateTokenAsync(Email, "dual");
        var failures = new List<string>();
        foreach (var (name, pem) in hostile)
        {
            using var r = await app.PostEnrollmentAsync(token.Token, pem);
            if ((int)r.StatusCode >= 500 || (r.StatusCode != HttpStatusCode.Created && r.Content.Headers.ContentType?.MediaType != "application/problem+json"))
                failures.Add($"{name}: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
        }
        Assert.Empty(failures);
        Assert.Equal("Healthy", await app.Client.GetStringAsync("/healthz"));
    }

    private static byte[] Der(string pem) => PemEncoding.Find(pem) is var f ? Convert.FromBase64String(pem[f.Base64Data]) : [];

    private static string Pem(byte[] der) => PemEncoding.WriteString("CERTIFICATE REQUEST", der);

    private static byte[] Nested(int depth)
    {
        var w = new AsnWriter(AsnEncodingRules.BER);
        var scopes = Enumerable.Range(0, depth).Select(_ => w.PushSequence()).ToList();
        scopes.Reverse();
        foreach (var s in scopes) s.Dispose();
        return w.Encode();
    }

    /// <summary>Every OBJECT IDENTIFIER in the DER and the offset of its last content byte.</summary>
    private static List<(string Oid, int LastByte)> OidOffsets(byte[] der)
    {
        var found = new List<(string, int)>();
        Walk(der, 0, der.Length, found);
        return found;
    }

    private static void Walk(byte[] der, int start, int end, List<(string, int)> found)
    {
        var at = start;
        while (at < end)
        {
            var reader = new AsnReader(der.AsMemory(at, end - at), AsnEncodingRules.DER);
            var tag = reader.PeekTag();
            var whole = reader.PeekEncodedValue();
            var content = reader.PeekContentBytes();
            var contentStart = at + whole.Length - content.Length;
            if (tag.HasSameClassAndValue(Asn1Tag.ObjectIdentifier))
                found.Add((reader.ReadObjectIdentifier(), contentStart + content.Length - 1));
            else if (tag.IsConstructed)
                Walk(der, contentStart, contentStart + content.Length, found);
            else if (tag.HasSameClassAndValue(Asn1Tag.PrimitiveBitString) && content.Length > 2 && content.Span[0] == 0 && content.Span[1] == 0x30)
            {
                // The RSA key inside the SPKI's BIT STRING (a signature may look alike by chance: then it is no DER).
                try { Walk(der, contentStart + 1, contentStart + content.Length, found); }
                catch (AsnContentException) { }
            }
            at += whole.Length;
        }
    }
}
