using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.Pkcs;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Gal;

/// <summary>
/// The value format of <c>userSMIMECertificate</c> (RFC 2798 §2.8): a PKCS#7/CMS SignedData.
/// Outlook reads certificates from it; we write a degenerate "certs-only" SignedData
/// (RFC 5652 §5.2: no signers, no content) holding exactly one certificate, so that each
/// published certificate maps to exactly one attribute value and removal can find it.
/// Encoded by hand with System.Formats.Asn1 so the bytes are deterministic DER.
/// </summary>
public static class SmimeCertificateBundle
{
    private const string IdSignedData = "1.2.840.113549.1.7.2";
    private const string IdData = "1.2.840.113549.1.7.1";

    /// <summary>Builds ContentInfo { signedData, SignedData { v1, {}, {id-data}, [0] { cert }, {} } }.</summary>
    public static byte[] Create(byte[] certificateDer)
    {
        ArgumentNullException.ThrowIfNull(certificateDer);
        EnsureCertificate(certificateDer);

        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence()) // ContentInfo
        {
            w.WriteObjectIdentifier(IdSignedData);
            using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 0, isConstructed: true))) // [0] EXPLICIT
            using (w.PushSequence()) // SignedData
            {
                // RFC 5652 §5.1: version 1 when there are no attribute/other certificates,
                // eContentType is id-data and no SignerInfo is v3.
                w.WriteInteger(1);
                using (w.PushSetOf()) { } // digestAlgorithms: empty
                using (w.PushSequence()) // encapContentInfo without eContent
                {
                    w.WriteObjectIdentifier(IdData);
                }
                using (w.PushSetOf(new Asn1Tag(TagClass.ContextSpecific, 0, isConstructed: true))) // certificates [0] IMPLICIT
                {
                    w.WriteEncodedValue(certificateDer);
                }
                using (w.PushSetOf()) { } // signerInfos: empty
            }
        }
        return w.Encode();
    }

    /// <summary>
    /// Reads the certificates of a SignedData value (ours or anyone's; BER accepted because other
    /// tools write it). Returns false for values that are not a SignedData: such values belong to
    /// someone else and are left alone.
    /// </summary>
    public static bool TryReadCertificates(byte[] value, out IReadOnlyList<byte[]> certificatesDer)
    {
        certificatesDer = [];
        try
        {
            var contentInfo = new AsnReader(value, AsnEncodingRules.BER).ReadSequence();
            if (contentInfo.ReadObjectIdentifier() != IdSignedData)
            {
                return false;
            }
            var signedData = contentInfo.ReadSequence(new Asn1Tag(TagClass.ContextSpecific, 0)).ReadSequence();
            signedData.ReadInteger();
            signedData.ReadSetOf();   // digestAlgorithms
            signedData.ReadSequence(); // encapContentInfo
            var certs = new List<byte[]>();
            var certTag = new Asn1Tag(TagClass.ContextSpecific, 0, isConstructed: true);
            if (signedData.HasData && signedData.PeekTag().HasSameClassAndValue(certTag))
            {
                var set = signedData.ReadSetOf(skipSortOrderValidation: true, certTag);
                while (set.HasData)
                {
                    certs.Add(set.ReadEncodedValue().ToArray());
                }
            }
            certificatesDer = certs;
            return true;
        }
        catch (AsnContentException)
        {
            return false;
        }
    }

    /// <summary>True when <paramref name="value"/> is a SignedData carrying exactly this one certificate (and nothing else),
    /// i.e. the value we would have written for it. Values that bundle more certificates are not ours to remove.</summary>
    public static bool CarriesOnly(byte[] value, byte[] certificateDer) =>
        TryReadCertificates(value, out var certs) && certs.Count == 1 && certs[0].AsSpan().SequenceEqual(certificateDer);

    /// <summary>A value that bundles this certificate with others (Outlook's "Publish to GAL" writes the person's signing and
    /// encryption certificates in one signed value) with this certificate taken out and everything else kept: the content,
    /// the signers and their signatures, which cover the content and signed attributes but not the certificates (RFC 5652
    /// §5.3, §5.4). Null when the value does not carry it, carries nothing else (the whole value goes then), or cannot be read.
    /// .NET's SignedCms does the re-encoding (BouncyCastle is not needed for this).</summary>
    public static byte[]? Without(byte[] value, byte[] certificateDer)
    {
        if (!TryReadCertificates(value, out var certs) || !certs.Any(c => c.AsSpan().SequenceEqual(certificateDer)) ||
            certs.All(c => c.AsSpan().SequenceEqual(certificateDer)))
        {
            return null;
        }
        try
        {
            var cms = new SignedCms();
            cms.Decode(value);
            foreach (var cert in cms.Certificates.Where(c => c.RawData.AsSpan().SequenceEqual(certificateDer)).ToList())
            {
                cms.RemoveCertificate(cert);
            }
            return cms.Encode();
        }
        catch (CryptographicException)
        {
            return null; // not a SignedData .NET can re-encode: left as it is
        }
    }

    private static void EnsureCertificate(byte[] der)
    {
        try
        {
            using var _ = X509CertificateLoader.LoadCertificate(der);
        }
        catch (CryptographicException e)
        {
            throw new ArgumentException("Not a DER X.509 certificate.", nameof(der), e);
        }
    }
}
