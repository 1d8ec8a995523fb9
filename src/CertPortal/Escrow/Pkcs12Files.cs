using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Escrow;

/// <summary>PKCS#12 files for server-generated and recovered keys. AES-256 (PBES2, HMAC-SHA256 MAC) by
/// default; the compatibility format (3DES, SHA-1 MAC) is for clients that cannot read PBES2, such as
/// gpgsm 2.2 and older Windows.</summary>
public static class Pkcs12Files
{
    public static bool TryParseFormat(string? value, out Pkcs12Format format)
    {
        format = Pkcs12Format.Aes256;
        switch ((value ?? "aes256").Trim().ToLowerInvariant())
        {
            case "aes256": return true;
            case "compatible-3des": format = Pkcs12Format.Compatible3Des; return true;
            default: return false;
        }
    }

    public static byte[] Build(X509Certificate2 certificate, ReadOnlySpan<byte> pkcs8, IEnumerable<X509Certificate2> chain, string password,
        Pkcs12Format format, int iterations)
    {
        using var withKey = WithPrivateKey(certificate, pkcs8);
        var collection = new X509Certificate2Collection { withKey };
        // Chain certificates go in as public certificates only: ExportPkcs12 writes the private key of
        // every certificate that has one, and the CA's own certificate objects carry the CA keys.
        var publicChain = chain.Select(c => X509CertificateLoader.LoadCertificate(c.RawData)).ToList();
        try
        {
            collection.AddRange(publicChain.ToArray());
            // The MAC uses the same hash (HMAC-SHA256, or SHA-1 for the compatibility format, which gpgsm 2.2 requires).
            var pbe = format == Pkcs12Format.Aes256
                ? new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, iterations)
                : new PbeParameters(PbeEncryptionAlgorithm.TripleDes3KeyPkcs12, HashAlgorithmName.SHA1, iterations);
            // A few salts make a 3DES file that gpgsm 2.2 cannot open (GpgsmPkcs12Quirk): draw new ones.
            // Each try hits the quirk with probability about 1/64, so the loop ends at once in practice.
            var pfx = collection.ExportPkcs12(pbe, password);
            for (var attempt = 0; format == Pkcs12Format.Compatible3Des && attempt < 32 && GpgsmPkcs12Quirk.Affects(pfx, password); attempt++)
                pfx = collection.ExportPkcs12(pbe, password);
            return pfx;
        }
        finally
        {
            foreach (var c in publicChain) c.Dispose();
        }
    }

    /// <summary>True when <paramref name="password"/> is the one the file was made with (its MAC verifies).</summary>
    public static bool PasswordOpens(byte[] pkcs12, string password)
    {
        try
        {
            // Loading checks the MAC; ephemeral: the key never touches a key store.
            using var loaded = X509CertificateLoader.LoadPkcs12(pkcs12, password, X509KeyStorageFlags.EphemeralKeySet);
            return true;
        }
        catch (CryptographicException)
        {
            return false;
        }
    }

    /// <summary>An EC certificate whose keyUsage is keyAgreement only is an ECDH key to .NET, not ECDSA.</summary>
    public static X509Certificate2 WithPrivateKey(X509Certificate2 certificate, ReadOnlySpan<byte> pkcs8)
    {
        switch (certificate.PublicKey.Oid.Value)
        {
            case "1.2.840.113549.1.1.1":
                using (var rsa = RSA.Create()) { rsa.ImportPkcs8PrivateKey(pkcs8, out _); return certificate.CopyWithPrivateKey(rsa); }
            default:
                using (var ecdsaPublic = certificate.GetECDsaPublicKey())
                {
                    if (ecdsaPublic is not null)
                    {
                        using var ecdsa = ECDsa.Create();
                        ecdsa.ImportPkcs8PrivateKey(pkcs8, out _);
                        return certificate.CopyWithPrivateKey(ecdsa);
                    }
                }
                using (var ecdh = ECDiffieHellman.Create()) { ecdh.ImportPkcs8PrivateKey(pkcs8, out _); return certificate.CopyWithPrivateKey(ecdh); }
        }
    }
}
