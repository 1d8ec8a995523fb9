using Microsoft.Extensions.Options;

namespace CertPortal;

/// <summary>Everything configurable, bound from the <c>CertPortal</c> section (env: <c>CertPortal__X</c>).</summary>
public sealed class CertPortalOptions
{
    public const string Section = "CertPortal";

    /// <summary>Holds the SQLite database, the encrypted CA keys and generated secrets.</summary>
    public string DataDirectory { get; set; } = "./data";

    /// <summary>Base of the CRL distribution point and AIA URLs written into certificates.
    /// Empty: the first address the service listens on.</summary>
    public string? PublicBaseUrl { get; set; }

    /// <summary>The https address people and administrators use: enrollment links, the console. Apart from
    /// <see cref="PublicBaseUrl"/> because that one must stay http (CRL/AIA), while browsers create keys
    /// (WebCrypto) only in secure contexts and links carry tokens. Empty: PublicBaseUrl when that is loopback.</summary>
    public string? PortalUrl { get; set; }

    /// <summary>Proxies whose X-Forwarded-For/-Proto headers are believed (none by default).</summary>
    public ReverseProxyOptions ReverseProxy { get; set; } = new();

    /// <summary>Bearer key of the admin API. Empty: generated on first start into
    /// <c>DataDirectory/admin-api-key</c> (mode 0600).</summary>
    public string? AdminApiKey { get; set; }

    /// <summary>Mail domains the CA may issue for; empty means any.</summary>
    public List<string> AllowedDomains { get; set; } = [];

    public DatabaseOptions Database { get; set; } = new();
    public CaOptions Ca { get; set; } = new();
    public IssuanceOptions Issuance { get; set; } = new();
    public CrlOptions Crl { get; set; } = new();
    public EscrowOptions Escrow { get; set; } = new();
    public LookupOptions Lookup { get; set; } = new();
    public Ocsp.OcspOptions Ocsp { get; set; } = new();

    public string ResolvedDataDirectory => Path.GetFullPath(DataDirectory);

    /// <summary>The link a person opens to get their digital ID. The token rides in the fragment, which browsers
    /// never send to a server: it stays out of request lines, proxy and server logs and Referer headers, and the
    /// enrollment page posts it (wwwroot/js/enroll-link.js).</summary>
    public string EnrollmentUrl(string token) => $"{PortalUrl!.TrimEnd('/')}/enroll#token={Uri.EscapeDataString(token)}";

    public static bool IsLoopback(string? url) => Uri.TryCreate(url, UriKind.Absolute, out var u) && u.IsLoopback;
}

/// <summary>Section <c>CertPortal:ReverseProxy</c>: the TLS-terminating proxies in front of the service.</summary>
public sealed class ReverseProxyOptions
{
    /// <summary>IP addresses of the proxies, e.g. <c>127.0.0.1</c> for nginx on the same host.</summary>
    public List<string> KnownProxies { get; set; } = [];
    /// <summary>Networks in CIDR notation, e.g. <c>10.0.0.0/24</c> for a proxy pool.</summary>
    public List<string> KnownNetworks { get; set; } = [];
}

public enum DatabaseProvider { Sqlite, Postgres }

public sealed class DatabaseOptions
{
    public DatabaseProvider Provider { get; set; } = DatabaseProvider.Sqlite;

    /// <summary>Empty with SQLite: <c>DataDirectory/certportal.db</c>. Required for Postgres.</summary>
    public string? ConnectionString { get; set; }
}

public sealed class CaOptions
{
    /// <summary>Protects the CA private keys at rest (PKCS#8 PBES2, AES-256). Empty: a random
    /// passphrase is generated into <c>DataDirectory/ca-key-passphrase</c> (mode 0600); set it
    /// from a secret store in production so the key files alone are useless.</summary>
    public string? KeyPassphrase { get; set; }

    /// <summary>RSA-2048, RSA-3072, RSA-4096, EC-P256 or EC-P384.</summary>
    public string RootKeyAlgorithm { get; set; } = "RSA-4096";
    public string IssuingKeyAlgorithm { get; set; } = "RSA-3072";
    public int RootValidityYears { get; set; } = 20;
    public int IssuingValidityYears { get; set; } = 10;
    public string OrganizationName { get; set; } = "CertPortal";
    public string RootCommonName { get; set; } = "CertPortal Root CA";
    public string IssuingCommonName { get; set; } = "CertPortal Issuing CA";
}

public enum SubjectCommonName { Mailbox, DisplayName }

public sealed class IssuanceOptions
{
    /// <summary>S/MIME BR allow at most 825 days.</summary>
    public int ValidityDays { get; set; } = 365;

    /// <summary>Mailbox (default): S/MIME BR mailbox-validated (CN = the mailbox, policy 2.23.140.1.5.1.x).
    /// DisplayName: the person's name in CN, as corporate CAs commonly do. A personal name belongs to the
    /// sponsor-validated profile (S/MIME BR 7.1.4.2.2, policy 2.23.140.1.5.3.x): the organisation
    /// (<see cref="OrganizationName"/>) vouches for the person, and the subject carries it along with the
    /// givenName/surname the name is split into.</summary>
    public SubjectCommonName SubjectCommonName { get; set; } = SubjectCommonName.Mailbox;

    /// <summary>subject:organizationName of sponsor-validated certificates; required in DisplayName mode.</summary>
    public string? OrganizationName { get; set; }

    /// <summary>subject:organizationIdentifier of sponsor-validated certificates (S/MIME BR 7.1.4.2.2 (d): a
    /// registration scheme, country and reference such as <c>NTRGB-12345678</c> or <c>VATDE-123456789</c>).
    /// Required in DisplayName mode: the BR (1.0.11, as pkilint checks them) make it a SHALL for sponsor-validated.</summary>
    public string? OrganizationIdentifier { get; set; }

    /// <summary>Certificate policy OIDs. Default: S/MIME BR strict, mailbox-validated (2.23.140.1.5.1.3) or, in
    /// DisplayName mode, sponsor-validated (2.23.140.1.5.3.3). A multipurpose policy (….2) allows holds.</summary>
    public List<string> PolicyOids { get; set; } = [];

    public int MaxTokenValidHours { get; set; } = 24 * 30;
    public int DefaultTokenValidHours { get; set; } = 72;

    public IReadOnlyList<string> EffectivePolicyOids =>
        PolicyOids.Count > 0 ? PolicyOids
        : [SubjectCommonName == SubjectCommonName.DisplayName ? Authority.Oids.PolicySponsorValidatedStrict : Authority.Oids.PolicyMailboxValidatedStrict];
}

public sealed class CrlOptions
{
    /// <summary>nextUpdate - thisUpdate. S/MIME BR: at most 10 days.</summary>
    public TimeSpan Lifetime { get; set; } = TimeSpan.FromDays(7);

    /// <summary>A new CRL is signed when the current one is older than this, even without revocations.</summary>
    public TimeSpan RefreshAfter { get; set; } = TimeSpan.FromDays(1);

    /// <summary>The root CRL (only ever lists a revoked issuing CA) lives longer.</summary>
    public TimeSpan RootLifetime { get; set; } = TimeSpan.FromDays(180);

    /// <summary>How often each node looks for revocations made on other nodes, CRLs other nodes signed (to serve
    /// them) and CRLs due for <see cref="RefreshAfter"/>. Bounds how late another node's change reaches this one.</summary>
    public TimeSpan CheckInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How long the publisher waits after a revocation before signing, so a burst of revocations makes one
    /// CRL. A revocation is in the CRL about PublishDelay (+ CheckInterval on other nodes) after it was confirmed.
    /// Zero: the CRL is signed before the revocation call returns (tests; tiny installations).</summary>
    public TimeSpan PublishDelay { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>Zero (the default): every publication signs a complete CRL, and there are no delta CRLs. Otherwise
    /// delta CRLs are on: a complete (base) CRL is signed at most this often, and the revocations, holds and releases
    /// in between go into delta CRLs (RFC 5280 §5.2.4) that relying parties fetch at the freshestCRL URL. Worth it when
    /// the complete CRL is large; relying parties that ignore delta CRLs (NSS; OpenSSL without -use_deltas) then see a
    /// revocation up to this much later.</summary>
    public TimeSpan DeltaBaseInterval { get; set; } = TimeSpan.Zero;

    public bool DeltasEnabled => DeltaBaseInterval > TimeSpan.Zero;
}

public enum KeyGenerationPolicy { Refused, Allowed, Required }

public enum Pkcs12Format { Aes256, Compatible3Des }

/// <summary>Key escrow (section <c>CertPortal:Escrow</c>). Signing keys are never generated or kept.</summary>
public sealed class EscrowOptions
{
    /// <summary>M: agent shares needed to recover a key.</summary>
    public int Threshold { get; set; } = 2;
    /// <summary>N: the fewest active agents a key may be escrowed to. Every active agent gets a share, so
    /// N above M leaves room for lost agents: with 2 of 3, one agent may leave without losing any key.</summary>
    public int MinimumAgents { get; set; } = 3;
    /// <summary>Server-side generation (and therefore escrow) of encryption-profile keys.</summary>
    public KeyGenerationPolicy EncryptionKeyGeneration { get; set; } = KeyGenerationPolicy.Allowed;
    /// <summary>Dual-use keys also sign, so escrowing them weakens non-repudiation: refused unless chosen.</summary>
    public KeyGenerationPolicy DualKeyGeneration { get; set; } = KeyGenerationPolicy.Refused;
    public TimeSpan RecoveryRequestLifetime { get; set; } = TimeSpan.FromHours(72);
    /// <summary>PBKDF2 iterations of AES-256 PKCS#12 files (the password protects the key in transit).</summary>
    public int Pkcs12Iterations { get; set; } = 100_000;
    /// <summary>Accept approvals with a plaintext share (<c>{"share": ...}</c>, what certportal-kra printed before shares were
    /// sealed to their request). Off: a plaintext share is the same for every request of an escrow, so anyone who once saw it
    /// approves any later request with the agent's API key alone. Only for agents who cannot update their CLI yet.</summary>
    public bool AcceptPlaintextShares { get; set; }
}

/// <summary>The recipient look-up's in-memory cache (section <c>CertPortal:Lookup</c>).</summary>
public sealed class LookupOptions
{
    /// <summary>Mailboxes whose answers are kept in memory; 0 turns the cache off.</summary>
    public int MaxMailboxes { get; set; } = 100_000;
    /// <summary>Bytes the cached answers may take (certificates, JSON answers and their bookkeeping, about 2.6 KiB for a
    /// mailbox with one EC certificate asked for one way, 4 KiB with RSA); the bound that decides the memory, since a
    /// mailbox's size depends on its certificates. An answer leaves the cache <see cref="MaxStaleness"/> after its read,
    /// so the cache holds the mailboxes asked for within that time, up to this bound. 0 turns the cache off.</summary>
    public long MaxCacheBytes { get; set; } = 64L << 20;
    /// <summary>How often every node reads the changes made by all nodes: the usual bound on staleness across nodes.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(500);
    /// <summary>An answer is read again from the database at least this often, whatever happened.</summary>
    public TimeSpan MaxStaleness { get; set; } = TimeSpan.FromSeconds(30);
}

/// <summary>Start-up validation: a bad setting stops the service with a message naming it.</summary>
public sealed class CertPortalOptionsValidator : IValidateOptions<CertPortalOptions>
{
    /// <summary>Also the least a generated secret's file may hold (<see cref="SecretFile.ReadOrCreate"/>).</summary>
    public const int MinimumAdminApiKeyLength = 24;
    public const int MinimumKeyPassphraseLength = 12;

    private static readonly string[] KeyAlgorithms = ["RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384"];

    public ValidateOptionsResult Validate(string? name, CertPortalOptions o)
    {
        var errors = new List<string>();
        const string p = CertPortalOptions.Section;

        if (string.IsNullOrWhiteSpace(o.DataDirectory))
            errors.Add($"{p}:DataDirectory must not be empty.");
        if (!string.IsNullOrEmpty(o.PublicBaseUrl) &&
            (!Uri.TryCreate(o.PublicBaseUrl, UriKind.Absolute, out var u) || u.Scheme != Uri.UriSchemeHttp || !string.IsNullOrEmpty(u.Query)))
            errors.Add($"{p}:PublicBaseUrl must be an absolute http:// URL without a query (S/MIME BR: CRL and AIA URLs use http), got '{o.PublicBaseUrl}'.");
        if (!string.IsNullOrEmpty(o.PortalUrl) &&
            (!Uri.TryCreate(o.PortalUrl, UriKind.Absolute, out var portal) || !string.IsNullOrEmpty(portal.Query) || !string.IsNullOrEmpty(portal.Fragment) ||
             !(portal.Scheme == Uri.UriSchemeHttps || (portal.Scheme == Uri.UriSchemeHttp && portal.IsLoopback))))
            errors.Add($"{p}:PortalUrl must be an absolute https:// URL without a query (http only on a loopback address: browsers create keys only in secure contexts), got '{o.PortalUrl}'.");
        else if (string.IsNullOrEmpty(o.PortalUrl))
            errors.Add($"{p}:PortalUrl must be set to the https:// address people use when {p}:PublicBaseUrl ('{o.PublicBaseUrl}') is not a loopback address: enrollment links carry tokens, and browsers create keys only over https.");
        foreach (var proxy in o.ReverseProxy.KnownProxies)
            if (!System.Net.IPAddress.TryParse(proxy, out _))
                errors.Add($"{p}:ReverseProxy:KnownProxies contains '{proxy}', which is not an IP address.");
        foreach (var network in o.ReverseProxy.KnownNetworks)
            if (!System.Net.IPNetwork.TryParse(network, out _))
                errors.Add($"{p}:ReverseProxy:KnownNetworks contains '{network}', which is not a network in CIDR notation (e.g. 10.0.0.0/24).");
        if (o.AdminApiKey is { } key && key.Length is > 0 and < MinimumAdminApiKeyLength)
            errors.Add($"{p}:AdminApiKey must be at least {MinimumAdminApiKeyLength} characters.");
        foreach (var d in o.AllowedDomains)
            if (string.IsNullOrWhiteSpace(d) || d.Contains('@') || d.Contains(' '))
                errors.Add($"{p}:AllowedDomains contains an invalid domain '{d}'.");

        if (o.Database.Provider == DatabaseProvider.Postgres && string.IsNullOrWhiteSpace(o.Database.ConnectionString))
            errors.Add($"{p}:Database:ConnectionString is required when {p}:Database:Provider is Postgres.");

        if (!KeyAlgorithms.Contains(o.Ca.RootKeyAlgorithm))
            errors.Add($"{p}:Ca:RootKeyAlgorithm must be one of {string.Join(", ", KeyAlgorithms)}, got '{o.Ca.RootKeyAlgorithm}'.");
        if (!KeyAlgorithms.Contains(o.Ca.IssuingKeyAlgorithm))
            errors.Add($"{p}:Ca:IssuingKeyAlgorithm must be one of {string.Join(", ", KeyAlgorithms)}, got '{o.Ca.IssuingKeyAlgorithm}'.");
        if (o.Ca.RootValidityYears is < 1 or > 30)
            errors.Add($"{p}:Ca:RootValidityYears must be between 1 and 30.");
        if (o.Ca.IssuingValidityYears < 1 || o.Ca.IssuingValidityYears > o.Ca.RootValidityYears)
            errors.Add($"{p}:Ca:IssuingValidityYears must be at least 1 and not longer than the root's validity.");
        if (o.Ca.KeyPassphrase is { Length: > 0 and < MinimumKeyPassphraseLength })
            errors.Add($"{p}:Ca:KeyPassphrase must be at least {MinimumKeyPassphraseLength} characters.");
        if (string.IsNullOrWhiteSpace(o.Ca.OrganizationName))
            errors.Add($"{p}:Ca:OrganizationName must not be empty.");

        if (o.Issuance.ValidityDays is < 1 or > 825)
            errors.Add($"{p}:Issuance:ValidityDays must be between 1 and 825 (S/MIME Baseline Requirements).");
        if (o.Issuance.MaxTokenValidHours is < 1 or > 24 * 90)
            errors.Add($"{p}:Issuance:MaxTokenValidHours must be between 1 and 2160.");
        if (o.Issuance.DefaultTokenValidHours < 1 || o.Issuance.DefaultTokenValidHours > o.Issuance.MaxTokenValidHours)
            errors.Add($"{p}:Issuance:DefaultTokenValidHours must be between 1 and MaxTokenValidHours.");
        foreach (var oid in o.Issuance.PolicyOids)
            if (!System.Text.RegularExpressions.Regex.IsMatch(oid, @"^[0-2](\.(0|[1-9][0-9]*))+$"))
                errors.Add($"{p}:Issuance:PolicyOids contains an invalid OID '{oid}'.");
        if (o.Issuance.SubjectCommonName == SubjectCommonName.DisplayName)
        {
            if (string.IsNullOrWhiteSpace(o.Issuance.OrganizationName))
                errors.Add($"{p}:Issuance:OrganizationName is required when {p}:Issuance:SubjectCommonName is DisplayName: a personal name in CN makes the certificate sponsor-validated (S/MIME BR 7.1.4.2.2), where the organisation is named.");
            if (string.IsNullOrWhiteSpace(o.Issuance.OrganizationIdentifier))
                errors.Add($"{p}:Issuance:OrganizationIdentifier is required when {p}:Issuance:SubjectCommonName is DisplayName: sponsor-validated certificates carry the organisation's registration (S/MIME BR 7.1.4.2.2 (d)), like NTRGB-12345678.");
            if (o.Issuance.PolicyOids.Any(oid => Authority.CertificatePolicies.ValidationOf(oid) is { } v && v != "sponsor"))
                errors.Add($"{p}:Issuance:PolicyOids must name sponsor-validated S/MIME BR policies (2.23.140.1.5.3.x) when {p}:Issuance:SubjectCommonName is DisplayName.");
        }
        else if (o.Issuance.PolicyOids.Any(oid => Authority.CertificatePolicies.ValidationOf(oid) is { } v && v != "mailbox"))
            errors.Add($"{p}:Issuance:PolicyOids must name mailbox-validated S/MIME BR policies (2.23.140.1.5.1.x) when {p}:Issuance:SubjectCommonName is Mailbox.");
        if (o.Issuance.OrganizationName is { } orgName && (orgName.Trim().Length is 0 or > 64 || orgName.Any(char.IsControl)))
            errors.Add($"{p}:Issuance:OrganizationName must be 1-64 printable characters (X.520 ub-organization-name).");
        if (!string.IsNullOrEmpty(o.Issuance.OrganizationIdentifier) &&
            !System.Text.RegularExpressions.Regex.IsMatch(o.Issuance.OrganizationIdentifier, @"^(?:(?:NTR|VAT|PSD|GOV)[A-Z]{2}(?:\+[A-Z0-9]{1,3})?|LEIXG|INTXG)-[!-~][ -~]{0,60}$"))
            errors.Add($"{p}:Issuance:OrganizationIdentifier must be a registration scheme (NTR, VAT, PSD, GOV), a country code and a reference, like NTRGB-12345678 (S/MIME BR 7.1.4.2.2 (d)), got '{o.Issuance.OrganizationIdentifier}'.");

        if (o.Crl.Lifetime <= TimeSpan.Zero || o.Crl.Lifetime > TimeSpan.FromDays(10))
            errors.Add($"{p}:Crl:Lifetime must be positive and at most 10 days (S/MIME BR).");
        if (o.Crl.RefreshAfter <= TimeSpan.Zero || o.Crl.RefreshAfter >= o.Crl.Lifetime)
            errors.Add($"{p}:Crl:RefreshAfter must be positive and shorter than {p}:Crl:Lifetime.");
        if (o.Crl.RootLifetime <= TimeSpan.Zero || o.Crl.RootLifetime > TimeSpan.FromDays(365))
            errors.Add($"{p}:Crl:RootLifetime must be positive and at most 365 days.");
        if (o.Escrow.Threshold is < 2 or > 16)
            errors.Add($"{p}:Escrow:Threshold must be between 2 and 16 (one agent alone must never recover a key).");
        if (o.Escrow.MinimumAgents < o.Escrow.Threshold || o.Escrow.MinimumAgents > Escrow.ShamirSecretSharing.MaxShares)
            errors.Add($"{p}:Escrow:MinimumAgents (N) must be at least {p}:Escrow:Threshold (M) and at most {Escrow.ShamirSecretSharing.MaxShares}.");
        if (o.Escrow.RecoveryRequestLifetime < TimeSpan.FromMinutes(5) || o.Escrow.RecoveryRequestLifetime > TimeSpan.FromDays(30))
            errors.Add($"{p}:Escrow:RecoveryRequestLifetime must be between 5 minutes and 30 days.");
        if (o.Escrow.Pkcs12Iterations is < 2048 or > 10_000_000)
            errors.Add($"{p}:Escrow:Pkcs12Iterations must be between 2048 and 10000000.");
        if (!Enum.IsDefined(o.Escrow.EncryptionKeyGeneration) || !Enum.IsDefined(o.Escrow.DualKeyGeneration))
            errors.Add($"{p}:Escrow:EncryptionKeyGeneration and DualKeyGeneration must be Refused, Allowed or Required.");
        if (o.Crl.CheckInterval <= TimeSpan.Zero)
            errors.Add($"{p}:Crl:CheckInterval must be positive.");
        if (o.Crl.PublishDelay < TimeSpan.Zero || o.Crl.PublishDelay > TimeSpan.FromHours(1))
            errors.Add($"{p}:Crl:PublishDelay must be between zero and one hour (S/MIME BR: revocation in the CRL within 24 hours, sooner is better).");
        if (o.Crl.DeltaBaseInterval < TimeSpan.Zero || (o.Crl.DeltasEnabled && (o.Crl.DeltaBaseInterval < TimeSpan.FromMinutes(1) || o.Crl.DeltaBaseInterval > o.Crl.RefreshAfter)))
            errors.Add($"{p}:Crl:DeltaBaseInterval must be zero (no delta CRLs) or between one minute and Crl:RefreshAfter ({o.Crl.RefreshAfter}): relying parties without delta support see a revocation only in the next complete CRL.");

        if (o.Lookup.MaxMailboxes is < 0 or > 10_000_000)
            errors.Add($"{p}:Lookup:MaxMailboxes must be between 0 (no cache) and 10000000.");
        if (o.Lookup.MaxCacheBytes is < 0 or > 64L << 30)
            errors.Add($"{p}:Lookup:MaxCacheBytes must be between 0 (no cache) and 68719476736 (64 GiB).");
        if (o.Lookup.PollInterval < TimeSpan.FromMilliseconds(50) || o.Lookup.PollInterval > TimeSpan.FromSeconds(60))
            errors.Add($"{p}:Lookup:PollInterval must be between 50 ms and 60 s.");
        if (o.Lookup.MaxStaleness < o.Lookup.PollInterval || o.Lookup.MaxStaleness > TimeSpan.FromHours(1))
            errors.Add($"{p}:Lookup:MaxStaleness must be at least {p}:Lookup:PollInterval and at most 1 hour.");

        o.Ocsp.Validate($"{p}:Ocsp", errors);

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
