namespace CertPortal.Authority;

/// <summary>RFC 5280 §5.3.1 CRLReason, with the numeric codes the CRL carries.</summary>
public enum RevocationReason
{
    Unspecified = 0,
    KeyCompromise = 1,
    CaCompromise = 2,
    AffiliationChanged = 3,
    Superseded = 4,
    CessationOfOperation = 5,
    CertificateHold = 6,
    RemoveFromCrl = 8,
    PrivilegeWithdrawn = 9,
    AaCompromise = 10,
}

public static class RevocationReasons
{
    /// <summary>The RFC 5280 ASN.1 names, as clients send them.</summary>
    public static string ToRfcName(this RevocationReason r) => r switch
    {
        RevocationReason.CaCompromise => "cACompromise",
        RevocationReason.AaCompromise => "aACompromise",
        RevocationReason.RemoveFromCrl => "removeFromCRL",
        _ => char.ToLowerInvariant(r.ToString()[0]) + r.ToString()[1..],
    };

    public static bool TryParse(string? name, out RevocationReason reason)
    {
        foreach (var r in Enum.GetValues<RevocationReason>())
            if (string.Equals(r.ToRfcName(), name?.Trim(), StringComparison.OrdinalIgnoreCase))
            { reason = r; return true; }
        reason = default;
        return false;
    }

    /// <summary>Reasons an administrator may give for an end-entity certificate. removeFromCRL is what
    /// "release" does; cACompromise and aACompromise describe authorities, not subscribers.</summary>
    public static readonly RevocationReason[] ForSubscribers =
    [
        RevocationReason.Unspecified, RevocationReason.KeyCompromise, RevocationReason.AffiliationChanged,
        RevocationReason.Superseded, RevocationReason.CessationOfOperation, RevocationReason.CertificateHold,
        RevocationReason.PrivilegeWithdrawn,
    ];
}
