using System.Security.Cryptography;
using CertPortal.Escrow;
using Org.BouncyCastle.Asn1;
using Org.BouncyCastle.Asn1.Cms;
using Org.BouncyCastle.Asn1.Nist;
using Org.BouncyCastle.Asn1.X509;
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

    /// <summary>The content of the first KeyAgreeRecipientInfo this EC key opens, or null (not an EC key, no such
    /// recipient, another agent's share, or an algorithm other than ECDH + X9.63 KDF + AES wrap + AES-CBC).</summary>
    private static byte[]? OpenEcdhRecipient(CmsEnvelopedData enveloped, byte[] pkcs8)
    {
        using var own = ECDiffieHellman.Create();
        try { own.ImportPkcs8PrivateKey(pkcs8, out _); }
        catch (CryptographicException) { return null; } // an RSA agent
        var ownPublic = own.ExportParameters(false);
        var data = EnvelopedData.GetInstance(enveloped.ContentInfo.Content);
        foreach (var element in data.RecipientInfos)
        {
            if (RecipientInfo.GetInstance(element).Info is not KeyAgreeRecipientInfo kari) continue;
            var hash = EccCmsKeyAgreement.KdfHash(kari.KeyEncryptionAlgorithm.Algorithm);
            var wrap = AlgorithmIdentifier.GetOptional(kari.KeyEncryptionAlgorithm.Parameters)?.Algorithm;
            var point = kari.Originator.OriginatorKey?.PublicKey.GetOctets();
            if (hash is null || wrap is null || point is null) continue;
            if (EccCmsKeyAgreement.DecodePoint(point, ownPublic.Curve, ownPublic.Q.X!.Length) is not { } originatorParameters) continue;

            byte[] z, kek;
            try
            {
                using var originator = ECDiffieHellman.Create(originatorParameters); // validates the point is on the curve
                z = own.DeriveRawSecretAgreement(originator.PublicKey);
                kek = EccCmsKeyAgreement.DeriveKeyEncryptionKey(z, hash.Value, wrap, kari.UserKeyingMaterial?.GetOctets());
            }
            catch (CryptographicException) { continue; } // not a point on our curve, or not AES wrap
            try
            {
                foreach (var encryptedKey in kari.RecipientEncryptedKeys)
                {
                    byte[] cek;
                    try { cek = EccCmsKeyAgreement.Unwrap(kek, RecipientEncryptedKey.GetInstance(encryptedKey).EncryptedKey.GetOctets()); }
                    catch (Org.BouncyCastle.Crypto.InvalidCipherTextException) { continue; } // another recipient's key
                    try { return DecryptContent(data.EncryptedContentInfo, cek); }
                    finally { CryptographicOperations.ZeroMemory(cek); }
                }
            }
            finally
            {
                CryptographicOperations.ZeroMemory(z);
                CryptographicOperations.ZeroMemory(kek);
            }
        }
        return null;
    }

    /// <summary>AES-CBC content (RFC 3565), what the server and <c>openssl cms -encrypt -aes256</c> write; null otherwise.</summary>
    private static byte[]? DecryptContent(EncryptedContentInfo content, byte[] cek)
    {
        var algorithm = content.ContentEncryptionAlgorithm.Algorithm;
        var keyLength = algorithm.Equals(NistObjectIdentifiers.IdAes128Cbc) ? 16
            : algorithm.Equals(NistObjectIdentifiers.IdAes192Cbc) ? 24
            : algorithm.Equals(NistObjectIdentifiers.IdAes256Cbc) ? 32 : 0;
        if (keyLength == 0 || cek.Length != keyLength || content.EncryptedContent is null) return null;
        if (content.ContentEncryptionAlgorithm.Parameters is not Asn1OctetString { } iv || iv.GetOctets().Length != 16) return null;
        using var aes = Aes.Create();
        aes.Key = cek;
        try { return aes.DecryptCbc(content.EncryptedContent.GetOctets(), iv.GetOctets(), PaddingMode.PKCS7); }
        catch (CryptographicException) { return null; } // padding wrong: the content was altered
    }
}
