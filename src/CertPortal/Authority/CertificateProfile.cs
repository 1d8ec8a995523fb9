using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Authority;

public enum CertificateProfileName { Signing, Encryption, Dual }

public enum CertificateUsage { Signing, Encryption }

/// <summary>What a certificate of a profile contains, as data. keyUsage differs by key type:
/// RSA encrypts by key transport (keyEncipherment), EC by key agreement (keyAgreement, RFC 5480 §3).</summary>
public sealed record CertificateProfile(
    CertificateProfileName Name,
    X509KeyUsageFlags RsaKeyUsage,
    X509KeyUsageFlags EcKeyUsage,
    bool EscrowAllowed)
{
    public static readonly CertificateProfile Signing = new(CertificateProfileName.Signing,
        X509KeyUsageFlags.DigitalSignature, X509KeyUsageFlags.DigitalSignature, EscrowAllowed: false);

    public static readonly CertificateProfile Encryption = new(CertificateProfileName.Encryption,
        X509KeyUsageFlags.KeyEncipherment, X509KeyUsageFlags.KeyAgreement, EscrowAllowed: true);

    /// <summary>One key for both: it can never be escrowed, because that would escrow a signing key.</summary>
    public static readonly CertificateProfile Dual = new(CertificateProfileName.Dual,
        X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment,
        X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyAgreement, EscrowAllowed: false);

    public static CertificateProfile For(CertificateProfileName name) => name switch
    {
        CertificateProfileName.Signing => Signing,
        CertificateProfileName.Encryption => Encryption,
        CertificateProfileName.Dual => Dual,
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    public X509KeyUsageFlags KeyUsageFor(SubscriberKeyType type) => type == SubscriberKeyType.Rsa ? RsaKeyUsage : EcKeyUsage;

    public bool Serves(CertificateUsage usage) => usage switch
    {
        CertificateUsage.Signing => Name is CertificateProfileName.Signing or CertificateProfileName.Dual,
        CertificateUsage.Encryption => Name is CertificateProfileName.Encryption or CertificateProfileName.Dual,
        _ => false,
    };

    public static IReadOnlyList<CertificateProfileName> Serving(CertificateUsage usage) =>
        Enum.GetValues<CertificateProfileName>().Where(n => For(n).Serves(usage)).ToList();

    /// <summary>Whether certificates of the profiles <paramref name="held"/> together serve every use of one of <paramref name="profile"/>:
    /// a dual certificate serves signing and encryption, and so do a signing and an encryption certificate side by side; a signing
    /// certificate alone does not serve what a dual one does.</summary>
    public static bool ServedBy(CertificateProfileName profile, IReadOnlyCollection<CertificateProfileName> held) =>
        held.Count > 0 && Enum.GetValues<CertificateUsage>().Where(For(profile).Serves).All(use => held.Any(h => For(h).Serves(use)));
}
