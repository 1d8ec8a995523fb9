using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;

namespace CertPortal.Enrollment;

/// <summary>Checks a PKCS#10 request: well-formed, self-signature valid (proof of possession), an
/// acceptable key, and no mailbox but the token's. The CSR contributes only its public key: the
/// subject and every extension of the certificate come from the token and the profile.</summary>
public static class CsrInspector
{
    public const int MaxPemLength = 16 * 1024;

    /// <summary>Signature algorithms .NET verifies and nobody has broken; the CSR's signature is the
    /// requester's proof of possession, so a forgeable one proves nothing.</summary>
    private static readonly HashSet<string> SignatureAlgorithms =
    [
        Oids.Sha256WithRsa, Oids.Sha384WithRsa, Oids.Sha512WithRsa, Oids.RsaPss,
        Oids.EcdsaWithSha256, Oids.EcdsaWithSha384, Oids.EcdsaWithSha512,
    ];

    private static readonly Dictionary<string, string> WeakSignatureAlgorithms = new()
    {
        [Oids.Md2WithRsa] = "MD2", [Oids.Md5WithRsa] = "MD5", [Oids.Sha1WithRsa] = "SHA-1", [Oids.EcdsaWithSha1] = "SHA-1",
    };

    /// <summary>MD2, MD5 or SHA-1 signatures (collisions are practical): they prove nothing.</summary>
    public static bool IsWeakSignatureAlgorithm(string? oid) => oid is not null && WeakSignatureAlgorithms.ContainsKey(oid);

    public static Outcome<SubscriberKey> Inspect(string? pem, string tokenMailbox)
    {
        var inspected = Inspect(pem, out var named);
        return ForMailbox(inspected, named, tokenMailbox);
    }

    /// <summary>What <see cref="Inspect(string?, string)"/> answers, from a CSR already checked by <see cref="Inspect(string?, out IReadOnlyList{string})"/>
    /// (its signature is not checked again).</summary>
    public static Outcome<SubscriberKey> ForMailbox(Outcome<SubscriberKey> inspected, IReadOnlyList<string> named, string tokenMailbox) =>
        inspected.Failure is null && OtherMailbox(named, tokenMailbox) is { } other ? other : inspected;

    /// <summary>The checks of <see cref="Inspect(string?, string)"/> but the mailbox's, for a request whose token is not known yet
    /// (read in the same statement that spends it): <paramref name="named"/> are the mailboxes the CSR names, for <see cref="OtherMailbox"/>.</summary>
    public static Outcome<SubscriberKey> Inspect(string? pem, out IReadOnlyList<string> named)
    {
        named = [];
        if (string.IsNullOrWhiteSpace(pem))
            return Failure.BadRequest("csr is required (a PKCS#10 certificate request in PEM form).");
        if (pem.Length > MaxPemLength)
            return Failure.BadRequest($"csr is larger than {MaxPemLength} characters.");
        var unreadable = Failure.Unprocessable("Unreadable CSR.", "csr is not a PEM-encoded PKCS#10 certificate request.");

        // Some tools (certreq, old Netscape) write "NEW CERTIFICATE REQUEST"; it is the same structure.
        if (DerOf(pem.Replace("NEW CERTIFICATE REQUEST", "CERTIFICATE REQUEST", StringComparison.Ordinal)) is not { } der)
            return unreadable;
        if (SignatureAlgorithmOf(der) is not { } signatureAlgorithm)
            return unreadable;
        if (WeakSignatureAlgorithms.TryGetValue(signatureAlgorithm, out var weak))
            return Failure.Unprocessable("Weak CSR signature algorithm.",
                $"The CSR is signed with {weak}, which no longer proves possession of the key; sign it with SHA-256 (the default of openssl req and every current tool).");
        if (!SignatureAlgorithms.Contains(signatureAlgorithm))
            return Failure.Unprocessable("Unsupported CSR signature algorithm.",
                $"The CSR is signed with algorithm {signatureAlgorithm}; use RSA (PKCS#1 v1.5 or PSS) or ECDSA with SHA-256, SHA-384 or SHA-512.");

        // .NET throws more than CryptographicException for what it cannot parse: NotSupportedException for an
        // unknown key algorithm, PlatformNotSupportedException for an unknown curve, AsnContentException for
        // malformed DER. All of them are the client's input, not our bug: 422, never 500.
        CertificateRequest request;
        try
        {
            // The key is checked before the signature, so a refused key is named as such, not as a bad signature.
            request = CertificateRequest.LoadSigningRequest(der, HashAlgorithmName.SHA256, out var consumed,
                CertificateRequestLoadOptions.SkipSignatureValidation | CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
            if (consumed != der.Length) return unreadable;
        }
        catch (Exception e) when (IsUnparseable(e))
        {
            return unreadable;
        }

        SubscriberKey? key;
        string keyError;
        IDisposable? read;
        try
        {
            if (!SubscriberKey.TryAccept(request.PublicKey, out key, out keyError, out read))
                return Failure.Unprocessable("Unsupported key.", keyError);
        }
        catch (Exception e) when (IsUnparseable(e))
        {
            return Failure.Unprocessable("Unsupported key.", "The CSR's public key could not be read.");
        }

        bool signed;
        using (read)
        {
            try
            {
                signed = VerifySignature(der, read!);
            }
            catch (Exception e) when (IsUnparseable(e))
            {
                signed = false;
            }
        }
        if (!signed)
            return Failure.Unprocessable("CSR signature invalid.",
                "The CSR's signature does not verify with its public key (no proof of possession).");

        // The subject is decoded only now (the loader keeps it as bytes): a malformed name is the client's input too.
        try
        {
            named = [.. MailboxesNamedIn(request)];
        }
        catch (Exception e) when (IsUnparseable(e))
        {
            return Failure.Unprocessable("Unreadable CSR.", "The CSR's subject name is not a valid X.500 name (RFC 5280 §4.1.2.4).");
        }
        return key;
    }

    /// <summary>The refusal when the CSR names a mailbox other than the token's, else null.</summary>
    public static Failure? OtherMailbox(IReadOnlyList<string> named, string tokenMailbox)
    {
        foreach (var n in named)
            if (!string.Equals(n, tokenMailbox, StringComparison.OrdinalIgnoreCase))
                return Failure.Unprocessable("CSR names another mailbox.",
                    $"The CSR names '{Mailbox.Sanitize(n)}', but this enrollment token is for {tokenMailbox}. Leave the mailbox out or use {tokenMailbox}.");
        return null;
    }

    /// <summary>The CSR's self-signature (RFC 2986 §4.2) checked with the key already read for the key policy. ECDSA and
    /// RSA PKCS#1 v1.5 (all but a few CSRs) are checked here; RSA-PSS, whose parameters name the hash, mask and salt, is
    /// left to .NET's own CSR loader, which reads the key once more.</summary>
    private static bool VerifySignature(byte[] der, IDisposable key)
    {
        var request = new AsnReader(der, AsnEncodingRules.DER).ReadSequence();
        var info = request.ReadEncodedValue();
        var algorithm = request.ReadSequence();
        var oid = algorithm.ReadObjectIdentifier();
        var parameters = algorithm.HasData ? algorithm.ReadEncodedValue() : ReadOnlyMemory<byte>.Empty;
        algorithm.ThrowIfNotEmpty();
        var signature = request.ReadBitString(out var unusedBits);
        request.ThrowIfNotEmpty();
        if (unusedBits != 0) return false;

        // RFC 5758 §3.2: ECDSA signature algorithms have no parameters. RFC 4055 §5: PKCS#1 v1.5 ones have NULL (or none).
        var hash = oid switch
        {
            Oids.EcdsaWithSha256 or Oids.Sha256WithRsa => HashAlgorithmName.SHA256,
            Oids.EcdsaWithSha384 or Oids.Sha384WithRsa => HashAlgorithmName.SHA384,
            Oids.EcdsaWithSha512 or Oids.Sha512WithRsa => HashAlgorithmName.SHA512,
            _ => default,
        };
        var pkcs1 = oid is Oids.Sha256WithRsa or Oids.Sha384WithRsa or Oids.Sha512WithRsa;
        return key switch
        {
            EcPublicKeys.EcVerificationKey ec when hash.Name is not null && !pkcs1 && parameters.IsEmpty =>
                ec.VerifyData(info.Span, signature, hash),
            RSA rsa when pkcs1 && (parameters.IsEmpty || parameters.Span.SequenceEqual(Asn1Null)) =>
                rsa.VerifyData(info.Span, signature, hash, RSASignaturePadding.Pkcs1),
            RSA when oid == Oids.RsaPss => VerifiedByDotNet(der),
            _ => false, // a signature algorithm that does not fit the key
        };
    }

    private static readonly byte[] Asn1Null = [0x05, 0x00];

    private static bool VerifiedByDotNet(byte[] der)
    {
        CertificateRequest.LoadSigningRequest(der, HashAlgorithmName.SHA256, out _, CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
        return true; // it throws when the signature does not verify
    }

    private static bool IsUnparseable(Exception e) =>
        e is CryptographicException or NotSupportedException or ArgumentException or AsnContentException or FormatException;

    private static byte[]? DerOf(string pem)
    {
        var text = pem.AsSpan();
        while (PemEncoding.TryFind(text, out var fields))
        {
            if (text[fields.Label].SequenceEqual("CERTIFICATE REQUEST"))
            {
                var der = new byte[fields.DecodedDataLength];
                return Convert.TryFromBase64Chars(text[fields.Base64Data], der, out var written) && written == der.Length ? der : null;
            }
            text = text[fields.Location.End..];
        }
        return null;
    }

    /// <summary>CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature } (RFC 2986).</summary>
    private static string? SignatureAlgorithmOf(byte[] der)
    {
        try
        {
            var outer = new AsnReader(der, AsnEncodingRules.DER);
            var request = outer.ReadSequence();
            request.ReadEncodedValue();
            return request.ReadSequence().ReadObjectIdentifier();
        }
        catch (AsnContentException)
        {
            return null;
        }
    }

    /// <summary>Mailboxes in the subject (emailAddress, or a CN that looks like one) and in a requested SAN.</summary>
    private static IEnumerable<string> MailboxesNamedIn(CertificateRequest request)
    {
        foreach (var rdn in request.SubjectName.EnumerateRelativeDistinguishedNames())
        {
            if (rdn.HasMultipleElements) continue;
            var type = rdn.GetSingleElementType().Value;
            var value = rdn.GetSingleElementValue() ?? "";
            if (type == Oids.EmailAddress || (type == Oids.CommonName && value.Contains('@')))
                yield return value;
        }
        foreach (var ext in request.CertificateExtensions.Where(e => e.Oid?.Value == Oids.SubjectAltName))
        {
            List<string> names;
            try { names = SubjectAltNames.ReadRfc822Names(ext.RawData, out _); }
            catch (AsnContentException) { names = ["(an unreadable subjectAltName)"]; }
            foreach (var n in names) yield return n;
        }
    }
}
