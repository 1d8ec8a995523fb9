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

    public static Outcome<SubscriberKey> Inspect(string? pem, string tokenMailbox)
    {
        if (string.IsNullOrWhiteSpace(pem))
            return Failure.BadRequest("csr is required (a PKCS#10 certificate request in PEM form).");
        if (pem.Length > MaxPemLength)
            return Failure.BadRequest($"csr is larger than {MaxPemLength} characters.");

        // Some tools (certreq, old Netscape) write "NEW CERTIFICATE REQUEST"; it is the same structure.
        var normalized = pem.Replace("NEW CERTIFICATE REQUEST", "CERTIFICATE REQUEST");
        CertificateRequest request;
        try
        {
            CertificateRequest.LoadSigningRequestPem(normalized, HashAlgorithmName.SHA256,
                CertificateRequestLoadOptions.SkipSignatureValidation | CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            return Failure.Unprocessable("Unreadable CSR.", "csr is not a PEM-encoded PKCS#10 certificate request.");
        }
        try
        {
            request = CertificateRequest.LoadSigningRequestPem(normalized, HashAlgorithmName.SHA256,
                CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
        }
        catch (CryptographicException)
        {
            return Failure.Unprocessable("CSR signature invalid.",
                "The CSR's signature does not verify with its public key (no proof of possession), or uses an unsupported signature algorithm.");
        }

        if (!SubscriberKey.TryAccept(request.PublicKey, out var key, out var keyError))
            return Failure.Unprocessable("Unsupported key.", keyError);

        foreach (var named in MailboxesNamedIn(request))
            if (!string.Equals(named, tokenMailbox, StringComparison.OrdinalIgnoreCase))
                return Failure.Unprocessable("CSR names another mailbox.",
                    $"The CSR names '{Mailbox.Sanitize(named)}', but this enrollment token is for {tokenMailbox}. Leave the mailbox out or use {tokenMailbox}.");
        return key;
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
            catch (System.Formats.Asn1.AsnContentException) { names = ["(an unreadable subjectAltName)"]; }
            foreach (var n in names) yield return n;
        }
    }
}
