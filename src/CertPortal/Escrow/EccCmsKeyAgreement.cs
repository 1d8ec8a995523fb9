using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Org.BouncyCastle.Asn1;
using Org.BouncyCastle.Asn1.Cms;
using Org.BouncyCastle.Asn1.Nist;
using Org.BouncyCastle.Asn1.Sec;
using Org.BouncyCastle.Asn1.X509;
using Org.BouncyCastle.Asn1.X9;
using Org.BouncyCastle.Crypto.Engines;
using Org.BouncyCastle.Cms;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Security;
using BcX509Certificate = Org.BouncyCastle.X509.X509Certificate;

namespace CertPortal.Escrow;

/// <summary>
/// The key-encryption key of CMS ephemeral-static ECDH (RFC 5753 §3.1.1): the ANSI X9.63 KDF over the
/// shared secret Z and the DER ECC-CMS-SharedInfo, then AES key wrap (RFC 3394) of the content key.
/// Compiled into both the server and certportal-kra: each encrypts (the server a share to an agent, the CLI a sealed share
/// to a recovery request) and opens what the other encrypted.
/// </summary>
/// <remarks>
/// Ours rather than BouncyCastle's: BouncyCastle.Cryptography (2.7.0, the newest served here) puts NULL
/// parameters in the SharedInfo's keyInfo for AES wrap where RFC 5753 §7.2 and RFC 3565 §2.3.2 say absent,
/// so its key-encryption key differs from OpenSSL's (and RFC 5753's)
/// (bcgit/bc-csharp#697): an EC agent could open a BouncyCastle-made share only with BouncyCastle.
/// </remarks>
internal static class EccCmsKeyAgreement
{
    /// <summary>dhSinglePass-stdDH-sha256kdf-scheme: what the server writes.</summary>
    public static readonly DerObjectIdentifier Sha256KdfScheme = SecObjectIdentifiers.dhSinglePass_stdDH_sha256kdf_scheme;

    /// <summary>id-aes256-wrap: what the server writes.</summary>
    public static readonly DerObjectIdentifier Aes256Wrap = NistObjectIdentifiers.IdAes256Wrap;

    /// <summary>The KDF hash of a dhSinglePass-stdDH-*kdf-scheme (what certportal-kra accepts), or null.</summary>
    public static HashAlgorithmName? KdfHash(DerObjectIdentifier scheme) =>
        scheme.Equals(X9ObjectIdentifiers.DHSinglePassStdDHSha1KdfScheme) ? HashAlgorithmName.SHA1
        : scheme.Equals(SecObjectIdentifiers.dhSinglePass_stdDH_sha256kdf_scheme) ? HashAlgorithmName.SHA256
        : scheme.Equals(SecObjectIdentifiers.dhSinglePass_stdDH_sha384kdf_scheme) ? HashAlgorithmName.SHA384
        : scheme.Equals(SecObjectIdentifiers.dhSinglePass_stdDH_sha512kdf_scheme) ? HashAlgorithmName.SHA512
        : null;

    /// <summary>The key length in bytes of an AES key wrap algorithm, or 0 when it is not one.</summary>
    public static int WrapKeyLength(DerObjectIdentifier wrap) =>
        wrap.Equals(NistObjectIdentifiers.IdAes128Wrap) ? 16
        : wrap.Equals(NistObjectIdentifiers.IdAes192Wrap) ? 24
        : wrap.Equals(NistObjectIdentifiers.IdAes256Wrap) ? 32
        : 0;

    /// <summary>KEK = X9.63-KDF(Z, SharedInfo). The caller zeroes <paramref name="z"/> and the result.</summary>
    public static byte[] DeriveKeyEncryptionKey(ReadOnlySpan<byte> z, HashAlgorithmName hash, DerObjectIdentifier wrap, byte[]? ukm)
    {
        var keyLength = WrapKeyLength(wrap);
        if (keyLength == 0) throw new CryptographicException("Only AES key wrap is supported for ECDH recipients.");
        var sharedInfo = SharedInfo(wrap, keyLength, ukm);
        var kek = new byte[keyLength];
        var input = new byte[z.Length + 4 + sharedInfo.Length];
        try
        {
            z.CopyTo(input);
            sharedInfo.CopyTo(input.AsSpan(z.Length + 4));
            // X9.63 KDF (SEC 1 §3.6.1): Hash(Z || counter || SharedInfo) for counter = 1, 2, ... (32-bit big-endian).
            for (int counter = 1, done = 0; done < keyLength; counter++)
            {
                System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(input.AsSpan(z.Length, 4), counter);
                var block = CryptographicOperations.HashData(hash, input);
                var take = Math.Min(block.Length, keyLength - done);
                block.AsSpan(0, take).CopyTo(kek.AsSpan(done));
                CryptographicOperations.ZeroMemory(block);
                done += take;
            }
            return kek;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(input);
        }
    }

    /// <summary>ECC-CMS-SharedInfo (RFC 5753 §7.2): keyInfo with the wrap algorithm and absent parameters,
    /// entityUInfo = the ukm when present, suppPubInfo = the KEK length in bits as a 32-bit big-endian integer.</summary>
    public static byte[] SharedInfo(DerObjectIdentifier wrap, int keyLength, byte[]? ukm)
    {
        var bits = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bits, (uint)keyLength * 8);
        var fields = new Asn1EncodableVector { new AlgorithmIdentifier(wrap) };
        if (ukm is not null) fields.Add(new DerTaggedObject(true, 0, new DerOctetString(ukm)));
        fields.Add(new DerTaggedObject(true, 2, new DerOctetString(bits)));
        return new DerSequence(fields).GetEncoded(Asn1Encodable.Der);
    }

    public static byte[] Wrap(byte[] kek, byte[] contentKey)
    {
        var engine = new AesWrapEngine();
        engine.Init(true, new KeyParameter(kek));
        return engine.Wrap(contentKey, 0, contentKey.Length);
    }

    /// <exception cref="Org.BouncyCastle.Crypto.InvalidCipherTextException">Wrong key (RFC 3394 integrity check).</exception>
    public static byte[] Unwrap(byte[] kek, byte[] wrapped)
    {
        var engine = new AesWrapEngine();
        engine.Init(false, new KeyParameter(kek));
        return engine.Unwrap(wrapped, 0, wrapped.Length);
    }

    /// <summary>The uncompressed point (SEC 1 §2.3.3) of a public key.</summary>
    public static byte[] EncodePoint(ECPoint q) => [0x04, .. q.X!, .. q.Y!];

    /// <summary>The point of an uncompressed encoding on <paramref name="curve"/>; null when it is not one.</summary>
    public static ECParameters? DecodePoint(ReadOnlySpan<byte> encoded, ECCurve curve, int fieldLength)
    {
        if (encoded.Length != 1 + 2 * fieldLength || encoded[0] != 0x04) return null;
        return new ECParameters
        {
            Curve = curve,
            Q = new ECPoint { X = encoded.Slice(1, fieldLength).ToArray(), Y = encoded.Slice(1 + fieldLength, fieldLength).ToArray() },
        };
    }

    /// <summary>The content of the first KeyAgreeRecipientInfo <paramref name="own"/> opens, or null (no such recipient, another
    /// recipient's, or an algorithm other than ECDH + X9.63 KDF + AES wrap + AES-CBC).</summary>
    public static byte[]? OpenKeyAgreeRecipient(EnvelopedData data, ECDiffieHellman own)
    {
        var ownPublic = own.ExportParameters(false);
        foreach (var element in data.RecipientInfos)
        {
            if (RecipientInfo.GetInstance(element).Info is not KeyAgreeRecipientInfo kari) continue;
            var hash = KdfHash(kari.KeyEncryptionAlgorithm.Algorithm);
            var wrap = AlgorithmIdentifier.GetOptional(kari.KeyEncryptionAlgorithm.Parameters)?.Algorithm;
            var point = kari.Originator.OriginatorKey?.PublicKey.GetOctets();
            if (hash is null || wrap is null || point is null) continue;
            if (DecodePoint(point, ownPublic.Curve, ownPublic.Q.X!.Length) is not { } originatorParameters) continue;

            byte[] z, kek;
            try
            {
                using var originator = ECDiffieHellman.Create(originatorParameters); // validates the point is on the curve
                z = own.DeriveRawSecretAgreement(originator.PublicKey);
                kek = DeriveKeyEncryptionKey(z, hash.Value, wrap, kari.UserKeyingMaterial?.GetOctets());
            }
            catch (CryptographicException) { continue; } // not a point on our curve, or not AES wrap
            try
            {
                foreach (var encryptedKey in kari.RecipientEncryptedKeys)
                {
                    byte[] cek;
                    try { cek = Unwrap(kek, RecipientEncryptedKey.GetInstance(encryptedKey).EncryptedKey.GetOctets()); }
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

    /// <summary>AES-CBC content (RFC 3565), what the server, certportal-kra and <c>openssl cms -encrypt -aes256</c> write; null otherwise.</summary>
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

    /// <summary>KeyAgreeRecipientInfo for ephemeral-static ECDH (RFC 5753 §3.1.1) with a conforming SharedInfo (see above for
    /// why not BouncyCastle's own generator), dhSinglePass-stdDH-sha256kdf and id-aes256-wrap. The ephemeral key and the
    /// agreement run in .NET (OpenSSL underneath).</summary>
    public sealed class RecipientGenerator(X509Certificate2 recipient) : RecipientInfoGenerator
    {
        public RecipientInfo Generate(KeyParameter contentEncryptionKey, SecureRandom random)
        {
            using var recipientKey = recipient.GetECDiffieHellmanPublicKey()
                ?? throw new CryptographicException("The recipient certificate holds no EC public key.");
            var recipientBc = new BcX509Certificate(recipient.RawData);
            using var ephemeral = ECDiffieHellman.Create(recipientKey.ExportParameters(false).Curve);
            var z = ephemeral.DeriveRawSecretAgreement(recipientKey.PublicKey);
            var kek = DeriveKeyEncryptionKey(z, HashAlgorithmName.SHA256, Aes256Wrap, ukm: null);
            var cek = contentEncryptionKey.GetKey();
            try
            {
                var wrapped = Wrap(kek, cek);
                // RFC 5753 §3.1.1: originatorKey with id-ecPublicKey; parameters absent (the curve is the recipient's).
                var originator = new OriginatorIdentifierOrKey(new OriginatorPublicKey(
                    new AlgorithmIdentifier(X9ObjectIdentifiers.IdECPublicKey), EncodePoint(ephemeral.ExportParameters(false).Q)));
                var keyEncryption = new AlgorithmIdentifier(Sha256KdfScheme, new AlgorithmIdentifier(Aes256Wrap));
                var rid = new KeyAgreeRecipientIdentifier(new IssuerAndSerialNumber(recipientBc.IssuerDN, recipientBc.SerialNumber));
                return new RecipientInfo(new KeyAgreeRecipientInfo(originator, null, keyEncryption,
                    new DerSequence(new RecipientEncryptedKey(rid, new DerOctetString(wrapped)))));
            }
            finally
            {
                CryptographicOperations.ZeroMemory(z);
                CryptographicOperations.ZeroMemory(kek);
                CryptographicOperations.ZeroMemory(cek);
            }
        }
    }
}
