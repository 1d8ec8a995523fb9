using System.Security.Cryptography;
using CertPortal.Escrow;
using Org.BouncyCastle.Asn1.Cms;
using Org.BouncyCastle.Cms;
using Org.BouncyCastle.Security;

namespace CertPortal.Kra;

/// <summary>Opens the CMS EnvelopedData the server encrypted one Shamir share into (RSA-OAEP key
/// transport or ECDH key agreement, see the server's AgentShareEncryption) with the agent's own key.</summary>
/// <remarks>BouncyCastle rather than System.Security.Cryptography.Pkcs.EnvelopedCms: EnvelopedCms cannot
/// decrypt KeyAgreeRecipientInfo (ECDH) on Linux.</remarks>
public static class ShareDecryption
{
    /// <summary>The agent key as PKCS#8 DER, whether RSA or EC, plain or passphrase-protected. Zero it after use.</summary>
    /// <param name="passphrase">Asked for only when the PEM is an ENCRYPTED PRIVATE KEY.</param>
    public static byte[] LoadPkcs8(string pem, Func<string> passphrase)
    {
        var encrypted = pem.Contains("ENCRYPTED PRIVATE KEY", StringComparison.Ordinal);
        var secret = encrypted ? passphrase() : null;
        foreach (var create in new Func<AsymmetricAlgorithm>[] { RSA.Create, ECDiffieHellman.Create })
        {
            using var key = create();
            try
            {
                if (encrypted) key.ImportFromEncryptedPem(pem, secret);
                else key.ImportFromPem(pem);
                return key.ExportPkcs8PrivateKey();
            }
            catch (Exception e) when (e is ArgumentException or CryptographicException) { /* try the other key type */ }
        }
        throw new KraException(encrypted
            ? "The key file holds no RSA or EC private key this passphrase opens."
            : "The key file holds no RSA or EC private key (PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\").");
    }

    /// <summary>Reads a "-----BEGIN CMS-----" (or "PKCS7") PEM block, as served by GET /api/v1/recoveries/{id}/share.</summary>
    public static byte[] ReadCmsPem(string pem)
    {
        if (!PemEncoding.TryFind(pem, out var fields) || pem[fields.Label] is not ("CMS" or "PKCS7"))
            throw new KraException("The share file is not a CMS PEM block (-----BEGIN CMS-----).");
        return Convert.FromBase64String(pem[fields.Base64Data]);
    }

    /// <summary>The request's submission certificate: the CERTIFICATE block after the CMS block in a share file, as the server
    /// serves it (GET /api/v1/recoveries/{id}/share gives both; the console's download holds both).</summary>
    public static System.Security.Cryptography.X509Certificates.X509Certificate2 ReadSubmissionCertificate(string pem)
    {
        var rest = pem.AsSpan();
        while (PemEncoding.TryFind(rest, out var fields))
        {
            if (rest[fields.Label] is "CERTIFICATE")
            {
                try { return System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(Convert.FromBase64String(rest[fields.Base64Data].ToString())); }
                catch (CryptographicException e) { throw new KraException("The certificate in the share file cannot be read.", e); }
            }
            rest = rest[fields.Location.End.Value..];
        }
        throw new KraException("The share file holds no request certificate (-----BEGIN CERTIFICATE-----) to seal the share to. " +
            "Save both encryptedSharePem and submissionCertificatePem from the download; a server that predates sealed shares " +
            "needs --output plaintext.");
    }

    /// <summary>The share (x || y) inside <paramref name="cms"/>. Zero it after use.</summary>
    public static byte[] Decrypt(byte[] cms, byte[] pkcs8)
    {
        CmsEnvelopedData enveloped;
        try { enveloped = new CmsEnvelopedData(cms); }
        catch (Exception e) when (e is CmsException or ArgumentException or IOException or InvalidCastException)
        {
            throw new KraException("The share file is not CMS EnvelopedData (damaged or truncated).", e);
        }
        // ECDH recipients first by RFC 5753 as OpenSSL does (what the server writes since session 4, and what any
        // conforming tool writes); then BouncyCastle, which opens RSA recipients and the ECDH shares earlier servers
        // wrote with BouncyCastle's own non-conforming SharedInfo (see EccCmsKeyAgreement).
        if (OpenEcdhRecipient(enveloped, pkcs8) is { } opened) return opened;
        var key = PrivateKeyFactory.CreateKey(pkcs8);
        foreach (var recipient in enveloped.GetRecipientInfos().GetRecipients())
        {
            try { return recipient.GetContent(key); }
            catch (Exception e) when (e is CmsException or Org.BouncyCastle.Crypto.CryptoException or InvalidCastException or ArgumentException)
            {
                /* not this recipient, or a damaged share */
            }
        }
        throw new KraException("This key cannot open the share: it was encrypted to another agent, or it was altered.");
    }

    /// <summary>The content of the first KeyAgreeRecipientInfo this EC key opens, or null (an RSA key, or see
    /// <see cref="EccCmsKeyAgreement.OpenKeyAgreeRecipient"/>).</summary>
    private static byte[]? OpenEcdhRecipient(CmsEnvelopedData enveloped, byte[] pkcs8)
    {
        using var own = ECDiffieHellman.Create();
        try { own.ImportPkcs8PrivateKey(pkcs8, out _); }
        catch (CryptographicException) { return null; } // an RSA agent
        return EccCmsKeyAgreement.OpenKeyAgreeRecipient(EnvelopedData.GetInstance(enveloped.ContentInfo.Content), own);
    }
}
