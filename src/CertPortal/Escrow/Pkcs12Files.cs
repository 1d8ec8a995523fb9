using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.Pkcs;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using CertPortal.Authority;

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

    /// <summary>The name a request gives <paramref name="format"/> in (<c>pkcs12Format</c>).</summary>
    public static string NameOf(Pkcs12Format format) => format == Pkcs12Format.Compatible3Des ? "compatible-3des" : "aes256";

    /// <summary>The format of a file <see cref="Build"/> made: the compatibility format encrypts with 3DES, the default never does.</summary>
    public static Pkcs12Format FormatOf(byte[] pkcs12) =>
        GpgsmPkcs12Quirk.TripleDesPbeParameters(pkcs12).Any() ? Pkcs12Format.Compatible3Des : Pkcs12Format.Aes256;

    /// <summary>The name Windows, Outlook, Keychain and NSS show for the ID, e.g. "Alice Example (signing) - CertPortal".
    /// An ASCII hyphen, not a dash: openssl pkcs12 -info prints BMPString names byte by byte.</summary>
    public static string FriendlyName(string? displayName, string email, CertificateProfileName profile, string organisation) =>
        $"{(string.IsNullOrWhiteSpace(displayName) ? email : displayName.Trim())} ({Purpose(profile)}) - {organisation}";

    public static string Purpose(CertificateProfileName profile) => profile switch
    {
        CertificateProfileName.Signing => "signing",
        CertificateProfileName.Encryption => "encryption",
        _ => "signing and encryption",
    };

    /// <summary>The profile a certificate was issued under, read from its keyUsage (for files made without the token at hand).</summary>
    public static CertificateProfileName ProfileOf(X509Certificate2 certificate)
    {
        var usage = certificate.Extensions.OfType<X509KeyUsageExtension>().FirstOrDefault()?.KeyUsages ?? X509KeyUsageFlags.None;
        var signs = usage.HasFlag(X509KeyUsageFlags.DigitalSignature);
        var encrypts = usage.HasFlag(X509KeyUsageFlags.KeyEncipherment) || usage.HasFlag(X509KeyUsageFlags.KeyAgreement);
        return signs && encrypts ? CertificateProfileName.Dual : signs ? CertificateProfileName.Signing : CertificateProfileName.Encryption;
    }

    /// <summary>Key, certificate and chain, with friendlyName and localKeyID on the key and its certificate. The
    /// localKeyID is the certificate's SHA-1, as Windows and OpenSSL write it: a constant one (what
    /// X509Certificate2Collection.ExportPkcs12 writes) lets importers pair the key of one ID with the
    /// certificate of another. Pkcs12Builder (not ExportPkcs12) because only it sets bag attributes; the
    /// algorithms are the same as before: PBES2 AES-256-CBC with an HMAC-SHA256 MAC, or PBE-SHA1-3DES with a
    /// SHA-1 MAC (gpgsm 2.2 requires both), for the key bag and the certificate safe alike.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Security", "CA5350:Do Not Use Weak Cryptographic Algorithms",
        Justification = "localKeyID is an identifier, the certificate's SHA-1 as Windows writes it; SHA-1 for the compatibility format is what gpgsm 2.2 and old Windows read.")]
    public static byte[] Build(X509Certificate2 certificate, ReadOnlySpan<byte> pkcs8, IEnumerable<X509Certificate2> chain, string password,
        Pkcs12Format format, int iterations, string friendlyName)
    {
        var pbe = format == Pkcs12Format.Aes256
            ? new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, iterations)
            : new PbeParameters(PbeEncryptionAlgorithm.TripleDes3KeyPkcs12, HashAlgorithmName.SHA1, iterations);
        using AsymmetricAlgorithm key = certificate.PublicKey.Oid.Value == RsaOid ? RSA.Create() : ECDsa.Create();
        key.ImportPkcs8PrivateKey(pkcs8, out _);
        var localKeyId = new Pkcs9LocalKeyId(SHA1.HashData(certificate.RawData));
        var name = FriendlyNameAttribute(friendlyName);
        // Chain certificates go in as certificates only (AddCertificate writes RawData): never a CA key.
        var chainCertificates = chain.ToList();

        byte[] Encode()
        {
            var keys = new Pkcs12SafeContents();
            var keyBag = keys.AddShroudedKey(key, password, pbe);
            keyBag.Attributes.Add(localKeyId);
            keyBag.Attributes.Add(name);
            var certificates = new Pkcs12SafeContents();
            var leaf = certificates.AddCertificate(certificate);
            leaf.Attributes.Add(localKeyId);
            leaf.Attributes.Add(name);
            foreach (var c in chainCertificates) certificates.AddCertificate(c);
            var builder = new Pkcs12Builder();
            builder.AddSafeContentsEncrypted(certificates, password, pbe);
            builder.AddSafeContentsUnencrypted(keys);
            builder.SealWithMac(password, pbe.HashAlgorithm, iterations);
            return builder.Encode();
        }

        // A few salts make a 3DES file that gpgsm 2.2 cannot open (GpgsmPkcs12Quirk): draw new ones.
        // Each try hits the quirk with probability about 1/64, so the loop ends at once in practice.
        var pfx = Encode();
        for (var attempt = 0; format == Pkcs12Format.Compatible3Des && attempt < 32 && GpgsmPkcs12Quirk.Affects(pfx, password); attempt++)
            pfx = Encode();
        return pfx;
    }

    private const string RsaOid = "1.2.840.113549.1.1.1";

    /// <summary>PKCS#9 friendlyName (RFC 2985: a BMPString). A BMPString holds the Basic Multilingual Plane only, so a
    /// character beyond it in a display name (an emoji, a Han Extension B ideograph such as 𠮷) is written as U+FFFD; writing
    /// it as is threw, and that person's server-key enrollment and renewal answered 500.</summary>
    private static Pkcs9AttributeObject FriendlyNameAttribute(string friendlyName)
    {
        var bmp = new StringBuilder(friendlyName.Length);
        foreach (var rune in friendlyName.EnumerateRunes()) bmp.Append(rune.IsBmp ? (char)rune.Value : '\uFFFD');
        var writer = new AsnWriter(AsnEncodingRules.DER);
        writer.WriteCharacterString(UniversalTagNumber.BMPString, bmp.ToString());
        return new Pkcs9AttributeObject(new Oid("1.2.840.113549.1.9.20"), writer.Encode());
    }

    /// <summary>True when <paramref name="password"/> is the one the file was made with (its MAC verifies).</summary>
    /// <remarks>The MAC alone, not a load: X509CertificateLoader applies its default limits (300,000 iterations per key derivation,
    /// 1,000,000 per file), and a file this service made under a larger Escrow:Pkcs12Iterations (600,000 is OWASP's figure for
    /// PBKDF2-HMAC-SHA256) never opened, so a lost answer was never collected. Our own files are trusted input here (the sealed
    /// retry copy); nothing is decrypted.</remarks>
    public static bool PasswordOpens(byte[] pkcs12, string password)
    {
        try
        {
            var info = Pkcs12Info.Decode(pkcs12, out var read, skipCopy: true);
            return read == pkcs12.Length && info.IntegrityMode == Pkcs12IntegrityMode.Password && info.VerifyMac(password);
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
            case RsaOid:
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
