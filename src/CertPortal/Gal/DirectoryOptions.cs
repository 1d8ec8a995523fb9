namespace CertPortal.Gal;

/// <summary>Which directory product we write to; decides attribute spellings and whether entries are created.</summary>
public enum DirectorySchema
{
    /// <summary>OpenLDAP (or another RFC 4523 server): inetOrgPerson entries, certificates as userCertificate;binary.</summary>
    OpenLdap,

    /// <summary>Active Directory: user objects already exist, found by mail, never created.</summary>
    ActiveDirectory,
}

/// <summary>
/// Settings of configuration section <c>CertPortal:Directory</c>.
/// An empty <see cref="Url"/> means "no directory": nothing is published.
/// </summary>
public sealed class DirectoryOptions
{
    public const string SectionName = "CertPortal:Directory";

    /// <summary>ldap://host[:port] or ldaps://host[:port]. Empty = directory publishing is off.</summary>
    public string Url { get; set; } = "";

    /// <summary>Upgrade an ldap:// connection with StartTLS (RFC 4513 §3). Not allowed together with ldaps://.</summary>
    public bool StartTls { get; set; }

    /// <summary>A directory of PEM CA certificates that may sign the directory server's TLS certificate, named by
    /// subject hash (<c>openssl rehash DIR</c>), for ldaps:// and StartTLS. Empty: libldap's own trust settings
    /// (on Debian /etc/ldap/ldap.conf, TLS_CACERT = the system CA bundle). The server certificate is always
    /// verified, host name included; there is no option to turn that off.</summary>
    public string TrustedCaCertificatesDirectory { get; set; } = "";

    /// <summary>True when the connection is TLS from the start (ldaps://) or after StartTLS.</summary>
    public bool UsesTls => StartTls || Url.StartsWith("ldaps://", StringComparison.OrdinalIgnoreCase);

    /// <summary>DN to bind as (simple bind). Empty = anonymous, which is only useful for reading.</summary>
    public string BindDn { get; set; } = "";

    /// <summary>Password for <see cref="BindDn"/>. Never logged, never included in exception messages.</summary>
    public string BindPassword { get; set; } = "";

    /// <summary>Subtree searched for people by mail and where new person entries are created, e.g. ou=people,dc=example,dc=test.</summary>
    public string PeopleBaseDn { get; set; } = "";

    /// <summary>Entry holding CA certificates and CRLs, e.g. cn=CertPortal Issuing CA,ou=pki,dc=example,dc=test.
    /// Its parent must exist. Empty = CA/CRL publication is off.</summary>
    public string PkiEntryDn { get; set; } = "";

    /// <summary>Entry holding the root CA's certificate and CRL, e.g. cn=CertPortal Root CA,ou=pki,dc=example,dc=test.
    /// One entry per CA, as AD CS keeps one CDP object per CA: a client that follows an LDAP CDP expects the one CRL
    /// of that CA there. Empty = the root's CRL is served over HTTP only.</summary>
    public string RootPkiEntryDn { get; set; } = "";

    public DirectorySchema Schema { get; set; } = DirectorySchema.OpenLdap;

    /// <summary>
    /// True (default): people's certificates are published on their entries (created with mail, cn,
    /// sn = display name, displayName when missing). False: nothing about people is published, not
    /// even certificates (they carry the mailbox); only the CA certificates and CRLs (serial numbers
    /// and revocation status) go to the PKI entry, and a resync removes our certificates from people.
    /// </summary>
    public bool PublishPersonalData { get; set; } = true;

    /// <summary>
    /// Create a person entry when none has the mail address. Null = default for the schema
    /// (true for OpenLdap, false for ActiveDirectory). ActiveDirectory never creates entries,
    /// whatever this says (user objects are owned by AD management, not by us).
    /// </summary>
    public bool? CreateMissingEntries { get; set; }

    /// <summary>When a person has several valid certificates of one profile (a renewal), publish only the
    /// newest: mail clients otherwise pick one at random. False publishes every valid certificate.</summary>
    public bool PublishOnlyNewest { get; set; } = true;

    /// <summary>How often the outbox worker looks for due publications.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>First retry delay after a failure; doubles per attempt up to <see cref="RetryMaxDelay"/>.</summary>
    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromSeconds(2);
    public TimeSpan RetryMaxDelay { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Timeout for connecting and for each LDAP operation, in seconds.</summary>
    public int TimeoutSeconds { get; set; } = 10;

    /// <summary>How long a node owns the outbox rows it claimed. Another node takes them over only after this,
    /// so it must outlast one pass (a node that died mid-pass delays its entries by at most this).</summary>
    public TimeSpan ClaimLease { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>True when a Url is configured.</summary>
    public bool IsEnabled => !string.IsNullOrWhiteSpace(Url);

    /// <summary>The effective value of <see cref="CreateMissingEntries"/> after applying the schema rule.</summary>
    public bool EffectiveCreateMissingEntries =>
        Schema != DirectorySchema.ActiveDirectory && (CreateMissingEntries ?? true);

    /// <summary>Checks the settings; returns one message per problem, each naming the setting. Empty = valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        const string p = SectionName + ":";
        if (!IsEnabled)
        {
            return errors; // directory off: nothing else matters
        }

        Uri? uri = null;
        if (!(Url.StartsWith("ldap://", StringComparison.OrdinalIgnoreCase) || Url.StartsWith("ldaps://", StringComparison.OrdinalIgnoreCase)))
        {
            errors.Add($"{p}Url must start with ldap:// or ldaps://");
        }
        else if (!Uri.TryCreate(Url, UriKind.Absolute, out uri) || string.IsNullOrEmpty(uri.Host))
        {
            errors.Add($"{p}Url is not a valid URL with a host name");
        }
        else if (uri.AbsolutePath is not ("" or "/") || uri.Query.Length > 0)
        {
            // RFC 4516 URLs can carry a base DN and filter; we take those from other settings, so refuse silently ignored parts.
            errors.Add($"{p}Url must be only scheme, host and port (e.g. ldap://ldap.example.test:389)");
        }

        if (StartTls && uri?.Scheme.Equals("ldaps", StringComparison.OrdinalIgnoreCase) == true)
        {
            errors.Add($"{p}StartTls cannot be used with an ldaps:// Url (the connection is already TLS)");
        }

        if (!string.IsNullOrEmpty(TrustedCaCertificatesDirectory))
        {
            if (!UsesTls)
                errors.Add($"{p}TrustedCaCertificatesDirectory is set but the connection is not TLS: use an ldaps:// Url or StartTls=true");
            else if (!System.IO.Directory.Exists(TrustedCaCertificatesDirectory))
                errors.Add($"{p}TrustedCaCertificatesDirectory '{TrustedCaCertificatesDirectory}' does not exist or is not a directory");
        }

        if (string.IsNullOrWhiteSpace(BindDn))
        {
            errors.Add($"{p}BindDn is required to write to the directory");
        }
        else if (!BindDn.Contains('='))
        {
            errors.Add($"{p}BindDn must be a distinguished name (e.g. cn=certportal,dc=example,dc=test)");
        }

        if (!string.IsNullOrEmpty(BindDn) && string.IsNullOrEmpty(BindPassword))
        {
            // An LDAP simple bind with a DN and an empty password is an "unauthenticated bind" (RFC 4513 §5.1.2):
            // it succeeds as anonymous on many servers, and then every write fails confusingly.
            errors.Add($"{p}BindPassword is required when BindDn is set");
        }

        if (string.IsNullOrWhiteSpace(PeopleBaseDn) && PublishPersonalData)
        {
            errors.Add($"{p}PeopleBaseDn is required");
        }
        else if (!PeopleBaseDn.Contains('='))
        {
            errors.Add($"{p}PeopleBaseDn must be a distinguished name (e.g. ou=people,dc=example,dc=test)");
        }

        if (!string.IsNullOrWhiteSpace(PkiEntryDn) && !StartsWithCn(PkiEntryDn))
        {
            // cRLDistributionPoint must have cn, and we derive it from the RDN.
            errors.Add($"{p}PkiEntryDn must start with cn= (e.g. cn=CertPortal Issuing CA,ou=pki,dc=example,dc=test)");
        }

        if (!string.IsNullOrWhiteSpace(RootPkiEntryDn))
        {
            if (!StartsWithCn(RootPkiEntryDn))
            {
                errors.Add($"{p}RootPkiEntryDn must start with cn= (e.g. cn=CertPortal Root CA,ou=pki,dc=example,dc=test)");
            }
            else if (string.IsNullOrWhiteSpace(PkiEntryDn))
            {
                errors.Add($"{p}RootPkiEntryDn needs PkiEntryDn (the issuing CA's entry) as well");
            }
            else if (DistinguishedNameMatch.Equal(RootPkiEntryDn, PkiEntryDn))
            {
                // One CRL attribute per entry: the two CAs' CRLs would overwrite each other. Compared as DNs: the server takes
                // "CN=CA, OU=pki" and "cn=CA,ou=pki" for the same entry.
                errors.Add($"{p}RootPkiEntryDn must differ from PkiEntryDn");
            }
        }

        if (!Enum.IsDefined(Schema))
        {
            errors.Add($"{p}Schema must be OpenLdap or ActiveDirectory");
        }

        if (PollInterval <= TimeSpan.Zero || PollInterval > TimeSpan.FromHours(1))
        {
            errors.Add($"{p}PollInterval must be positive and at most one hour");
        }

        if (RetryBaseDelay <= TimeSpan.Zero || RetryMaxDelay < RetryBaseDelay)
        {
            errors.Add($"{p}RetryBaseDelay must be positive and RetryMaxDelay at least RetryBaseDelay");
        }

        if (TimeoutSeconds is < 1 or > 300)
        {
            errors.Add($"{p}TimeoutSeconds must be between 1 and 300");
        }

        if (ClaimLease < TimeSpan.FromSeconds(2 * TimeoutSeconds) || ClaimLease > TimeSpan.FromHours(1))
        {
            errors.Add($"{p}ClaimLease must be at least twice TimeoutSeconds and at most one hour");
        }

        return errors;
    }

    // A PKI entry is a cRLDistributionPoint, which must have cn; we derive it from the RDN.
    private static bool StartsWithCn(string dn) => dn.TrimStart().StartsWith("cn=", StringComparison.OrdinalIgnoreCase);

    /// <summary>Never print the password (e.g. when options are logged at startup).</summary>
    public override string ToString() =>
        $"Url={Url}, StartTls={StartTls}, TrustedCaCertificatesDirectory={TrustedCaCertificatesDirectory}, BindDn={BindDn}, BindPassword={(string.IsNullOrEmpty(BindPassword) ? "(empty)" : "***")}, " +
        $"PeopleBaseDn={PeopleBaseDn}, PkiEntryDn={PkiEntryDn}, RootPkiEntryDn={RootPkiEntryDn}, Schema={Schema}, PublishPersonalData={PublishPersonalData}, " +
        $"CreateMissingEntries={EffectiveCreateMissingEntries}, TimeoutSeconds={TimeoutSeconds}";
}
