namespace CertPortal.Ocsp;

/// <summary>The OCSP responder (section <c>CertPortal:Ocsp</c>).</summary>
public sealed class OcspOptions
{
    /// <summary>nextUpdate - thisUpdate of a response. S/MIME BR 4.9.10: at least 8 hours, at most 10 days.</summary>
    public TimeSpan ResponseLifetime { get; set; } = TimeSpan.FromDays(4);

    /// <summary>A cached response is signed again once it is this old. S/MIME BR 4.9.10: for a lifetime of 16 hours or
    /// more, no later than 4 days after thisUpdate and at least 8 hours before nextUpdate.</summary>
    public TimeSpan RefreshAfter { get; set; } = TimeSpan.FromDays(1);

    /// <summary>Validity of the delegated OCSP signing certificates (one per CA). Short, because id-pkix-ocsp-nocheck
    /// means relying parties cannot check the responder certificate's own revocation (RFC 6960 4.2.2.2.1).</summary>
    public TimeSpan SignerValidity { get; set; } = TimeSpan.FromDays(30);

    /// <summary>A new signing certificate is made when the current one has less than this left. Longer than
    /// <see cref="ResponseLifetime"/>, so every response signed by the old one is past its nextUpdate before it expires.</summary>
    public TimeSpan SignerRenewBefore { get; set; } = TimeSpan.FromDays(10);

    /// <summary>max-age (and Expires) of GET responses for HTTP caches: how long a proxy may keep answering with a
    /// response after the status changed. Never beyond the response's nextUpdate.</summary>
    public TimeSpan HttpMaxAge { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Signed responses kept in memory; 0 signs every response on request.</summary>
    public int MaxCachedResponses { get; set; } = 100_000;

    /// <summary>Bytes the kept responses may take (each response without the responder's certificate, which they share,
    /// and its bookkeeping: about 1.55 KiB with EC keys, 1.75 KiB with RSA-2048); the bound that decides the memory. 0 signs
    /// every response on request.</summary>
    public long MaxCacheBytes { get; set; } = 32L << 20;

    internal void Validate(string section, List<string> errors)
    {
        if (ResponseLifetime < TimeSpan.FromHours(8) || ResponseLifetime > TimeSpan.FromDays(10))
            errors.Add($"{section}:ResponseLifetime must be between 8 hours and 10 days (S/MIME BR 4.9.10).");
        if (RefreshAfter <= TimeSpan.Zero || RefreshAfter > TimeSpan.FromDays(4) ||
            (ResponseLifetime >= TimeSpan.FromHours(16) ? RefreshAfter > ResponseLifetime - TimeSpan.FromHours(8) : RefreshAfter > ResponseLifetime / 2))
            errors.Add($"{section}:RefreshAfter must be positive, at most 4 days, and leave at least 8 hours (half the lifetime below 16 hours) " +
                $"before {section}:ResponseLifetime ends (S/MIME BR 4.9.10).");
        if (SignerValidity < TimeSpan.FromDays(1) || SignerValidity > TimeSpan.FromDays(365))
            errors.Add($"{section}:SignerValidity must be between 1 and 365 days.");
        if (SignerRenewBefore <= ResponseLifetime || SignerRenewBefore >= SignerValidity)
            errors.Add($"{section}:SignerRenewBefore must be longer than {section}:ResponseLifetime and shorter than {section}:SignerValidity.");
        if (HttpMaxAge < TimeSpan.Zero || HttpMaxAge > TimeSpan.FromDays(1))
            errors.Add($"{section}:HttpMaxAge must be between zero and one day.");
        if (MaxCachedResponses is < 0 or > 10_000_000)
            errors.Add($"{section}:MaxCachedResponses must be between 0 (no cache) and 10000000.");
        if (MaxCacheBytes is < 0 or > 64L << 30)
            errors.Add($"{section}:MaxCacheBytes must be between 0 (no cache) and 68719476736 (64 GiB).");
    }
}
