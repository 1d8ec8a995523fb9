using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Org.BouncyCastle.Asn1;
using Org.BouncyCastle.Asn1.Nist;
using Org.BouncyCastle.Cms;
using Org.BouncyCastle.Crypto.Operators;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Security;
using BcX509Certificate = Org.BouncyCastle.X509.X509Certificate;

namespace CertPortal.Escrow;

/// <summary>
/// Encrypts one Shamir share to one key recovery agent as CMS EnvelopedData (RFC 5652 §6),
/// so only that agent's private key can read it (and any S/MIME tool, e.g. <c>openssl cms -decrypt</c>).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>RSA agents: KeyTransRecipientInfo with RSAES-OAEP, SHA-256 and MGF1-SHA-256 (RFC 8017 §7.1, RFC 4055 §4).</item>
/// <item>EC agents: KeyAgreeRecipientInfo, ephemeral-static ECDH with dhSinglePass-stdDH-sha256kdf-scheme
/// and id-aes256-wrap (RFC 5753 §3.1, RFC 3394); a fresh ephemeral key per message; the key-encryption
/// key derived by <see cref="EccCmsKeyAgreement"/>, as OpenSSL derives it.</item>
/// <item>Content: id-aes256-CBC with a random IV (RFC 3565). CBC rather than AuthEnvelopedData/GCM because
/// it is what every CMS implementation decrypts; the share is authenticated separately by <see cref="ShareCommitment"/>.</item>
/// </list>
/// </remarks>
public sealed class AgentShareEncryption
{
    private const string PemLabel = "CMS"; // RFC 7468 §9

    private readonly AgentCertificateValidator _validator;

    public AgentShareEncryption(AgentCertificateValidator validator)
    {
        _validator = validator ?? throw new ArgumentNullException(nameof(validator));
    }

    /// <summary>Returns the DER-encoded ContentInfo (id-envelopedData) holding <paramref name="share"/>.</summary>
    /// <exception cref="InvalidAgentCertificateException">The certificate fails <see cref="AgentCertificateValidator"/>.</exception>
    public byte[] EncryptShare(ReadOnlySpan<byte> share, X509Certificate2 agentCertificate)
    {
        ArgumentNullException.ThrowIfNull(agentCertificate);
        if (share.IsEmpty)
            throw new ArgumentException("The share must not be empty.", nameof(share));

        var check = _validator.Validate(agentCertificate);
        if (!check.IsValid)
            throw new InvalidAgentCertificateException(check.Error!);

        var recipient = new BcX509Certificate(agentCertificate.RawData);
        // A SecureRandom per call: instances are not documented as thread-safe and this class may be a singleton.
        var random = new SecureRandom();
        var generator = new CmsEnvelopedDataGenerator(random);
        switch (recipient.GetPublicKey())
        {
            case RsaKeyParameters:
                generator.AddRecipientInfoGenerator(new KeyTransRecipientInfoGenerator(
                    recipient, new Asn1KeyWrapper("RSA/NONE/OAEPWITHSHA256ANDMGF1PADDING", recipient)));
                break;
            case ECPublicKeyParameters:
                generator.AddRecipientInfoGenerator(new EccCmsKeyAgreement.RecipientGenerator(agentCertificate));
                break;
            default:
                // The validator only admits RSA and EC, so this is a programming error.
                throw new InvalidAgentCertificateException("Unsupported agent public key type.");
        }

        byte[] content = share.ToArray();
        try
        {
            CmsEnvelopedData enveloped = generator.Generate(new CmsProcessableByteArray(content), NistObjectIdentifiers.IdAes256Cbc);
            return enveloped.ContentInfo.GetEncoded(Asn1Encodable.Der);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(content);
        }
    }

    /// <summary>PEM with the RFC 7468 "CMS" label, as written by <c>openssl cms -outform PEM</c>.</summary>
    public static string ToPem(byte[] der) => new(PemEncoding.Write(PemLabel, der));

    /// <summary>Reads a "-----BEGIN CMS-----" (or "PKCS7") PEM block back to DER.</summary>
    /// <exception cref="FormatException">No such PEM block.</exception>
    public static byte[] FromPem(string pem)
    {
        ArgumentNullException.ThrowIfNull(pem);
        if (!PemEncoding.TryFind(pem, out var fields))
            throw new FormatException("No PEM block found.");
        string label = pem[fields.Label];
        if (label is not (PemLabel or "PKCS7"))
            throw new FormatException($"Expected a CMS PEM block, found \"{label}\".");
        return Convert.FromBase64String(pem[fields.Base64Data]);
    }
}
