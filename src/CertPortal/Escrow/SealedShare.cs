using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Org.BouncyCastle.Asn1;
using Org.BouncyCastle.Asn1.Cms;
using Org.BouncyCastle.Asn1.Nist;
using Org.BouncyCastle.Cms;
using Org.BouncyCastle.Security;

namespace CertPortal.Escrow;

/// <summary>
/// What an agent submits to approve one recovery request: its decrypted share together with the request's id, sealed on the
/// agent's machine to that request's submission certificate, whose private key only the server holds (see
/// <c>RecoverySubmissionKey</c>). A plaintext share is the same for every request of an escrow, so whoever once saw one
/// (shell history, a proxy's body log) could approve any later request with the agent's API key alone; a sealed share opens
/// only with its own request's key and names that request inside, so seen once it approves nothing else.
/// Compiled into both the server (opening) and certportal-kra (sealing).
/// </summary>
/// <remarks>
/// CMS EnvelopedData (RFC 5652 §6) to the submission certificate's P-256 key: ephemeral-static ECDH with
/// dhSinglePass-stdDH-sha256kdf and AES-256 key wrap (<see cref="EccCmsKeyAgreement"/>), content AES-256-CBC, the same as
/// shares sent to EC agents, so <c>openssl cms -encrypt</c> can make one too. The content is DER:
/// <code>
/// SealedShareContent ::= SEQUENCE {
///     version   INTEGER (1),
///     requestId UTF8String,   -- the recovery request, e.g. "01a252e9-21ed-7b1c-ad85-fe4537e5be89"
///     share     OCTET STRING  -- x || y, as the agent's EscrowShares.EncryptedShare holds it
/// }
/// </code>
/// The content is not authenticated by CBC; it need not be: a changed share fails its commitment, a changed request id
/// fails the comparison, and only the server can open the envelope at all.
/// </remarks>
internal static class SealedShare
{
    public const int Version = 1;

    /// <summary>The submission certificate's subject: CN = the request id (how certportal-kra knows which request it seals for).</summary>
    public const string SubjectOrganization = "CertPortal key recovery request";

    public static byte[] EncodeContent(Guid requestId, ReadOnlySpan<byte> share)
    {
        // The copy handed to DerOctetString is zeroed once encoded (best effort, as for every share buffer).
        var copy = share.ToArray();
        try
        {
            return new DerSequence(DerInteger.ValueOf(Version), new DerUtf8String(requestId.ToString("D")), new DerOctetString(copy))
                .GetEncoded(Asn1Encodable.Der);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(copy);
        }
    }

    /// <summary>The request id and share in a content, or false when it is not one (the caller zeroes <paramref name="share"/>).</summary>
    public static bool TryDecodeContent(byte[] content, out Guid requestId, out byte[] share)
    {
        requestId = Guid.Empty;
        share = [];
        try
        {
            if (Asn1Object.FromByteArray(content) is not Asn1Sequence { Count: 3 } sequence) return false;
            if (sequence[0] is not DerInteger version || !version.HasValue(Version)) return false;
            if (sequence[1] is not DerUtf8String id || !Guid.TryParseExact(id.GetString(), "D", out requestId)) return false;
            if (sequence[2] is not Asn1OctetString octets || octets.GetOctets().Length == 0) return false;
            share = octets.GetOctets();
            return true;
        }
        catch (Exception e) when (e is IOException or ArgumentException or InvalidOperationException) { return false; }
    }

    /// <summary>The DER ContentInfo (id-envelopedData) of <paramref name="share"/> sealed for <paramref name="requestId"/>.</summary>
    public static byte[] Seal(Guid requestId, ReadOnlySpan<byte> share, X509Certificate2 submissionCertificate)
    {
        var generator = new CmsEnvelopedDataGenerator(new SecureRandom());
        generator.AddRecipientInfoGenerator(new EccCmsKeyAgreement.RecipientGenerator(submissionCertificate));
        var content = EncodeContent(requestId, share);
        try
        {
            return generator.Generate(new CmsProcessableByteArray(content), NistObjectIdentifiers.IdAes256Cbc).ContentInfo.GetEncoded(Asn1Encodable.Der);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(content);
        }
    }

    /// <summary>The content inside <paramref name="cms"/> if <paramref name="key"/> opens it, else null. Zero it after use.</summary>
    public static byte[]? Open(byte[] cms, ECDiffieHellman key) =>
        EnvelopedDataOf(cms) is { } data ? EccCmsKeyAgreement.OpenKeyAgreeRecipient(data, key) : null;

    /// <summary>Whether pasted text is a sealed share rather than a plaintext one (a console form takes either).</summary>
    public static bool IsSealed(string text)
    {
        try { return ParseSubmitted(text) is { } der && EnvelopedDataOf(der) is not null; }
        catch (FormatException) { return false; }
    }

    private static EnvelopedData? EnvelopedDataOf(byte[] cms)
    {
        try
        {
            var info = ContentInfo.GetInstance(Asn1Object.FromByteArray(cms));
            return CmsObjectIdentifiers.EnvelopedData.Equals(info.ContentType) ? EnvelopedData.GetInstance(info.Content) : null;
        }
        catch (Exception e) when (e is IOException or ArgumentException or InvalidCastException or InvalidOperationException) { return null; }
    }

    /// <summary>A sealed share as submitted: base64 of the DER (what certportal-kra prints), or PEM ("CMS" or "PKCS7",
    /// what <c>openssl cms -encrypt -outform PEM</c> writes). Null when it is neither.</summary>
    public static byte[]? ParseSubmitted(string text)
    {
        text = text.Trim();
        if (text.StartsWith("-----BEGIN", StringComparison.Ordinal))
            return PemEncoding.TryFind(text, out var fields) && text[fields.Label] is "CMS" or "PKCS7"
                ? Convert.FromBase64String(text[fields.Base64Data]) : null;
        var bytes = new byte[text.Length];
        return Convert.TryFromBase64String(text, bytes, out var written) ? bytes[..written] : null;
    }

    /// <summary>The request a submission certificate was made for (its CN), or null when it is not one.</summary>
    public static Guid? RequestIdOf(X509Certificate2 submissionCertificate) =>
        submissionCertificate.GetNameInfo(X509NameType.SimpleName, false) is { } cn && Guid.TryParseExact(cn, "D", out var id)
        && submissionCertificate.SubjectName.Name.Contains(SubjectOrganization, StringComparison.Ordinal) ? id : null;
}
