namespace CertPortal.Auditing;

/// <summary>The names the audit log gives the service itself, and people acting without an account. No account may take one
/// (<see cref="Security.Accounts"/>), or its actions could not be told apart from the service's in the log.</summary>
public static class AuditActors
{
    /// <summary>A request authenticated with the admin API key from the configuration.</summary>
    public const string AdminApiKey = "admin-api-key";
    /// <summary>A request without authentication.</summary>
    public const string Anonymous = "anonymous";
    /// <summary>An authenticated principal without a name (not expected; kept apart from every account).</summary>
    public const string Unknown = "unknown";
    /// <summary>The first-run page that creates the first administrator.</summary>
    public const string Setup = "setup";
    /// <summary>A person enrolling with a token.</summary>
    public const string Enrollee = "enrollee";
    /// <summary>The worker that revokes certificates superseded by a renewal.</summary>
    public const string Renewal = "renewal";
    /// <summary>A directory-driven enrollment run started by its schedule.</summary>
    public const string Schedule = "schedule";
    /// <summary>What a scheduled directory-driven enrollment run does (its invitations' tokens).</summary>
    public const string DirectoryEnrollment = "directory-enrollment";
    /// <summary>The pass that ends recovery requests whose lifetime ran out (RecoveryExpiryWorker, or before a request is opened).</summary>
    public const string RecoveryExpiry = "recovery-expiry";

    public static readonly IReadOnlySet<string> All =
        new HashSet<string>(StringComparer.Ordinal) { AdminApiKey, Anonymous, Unknown, Setup, Enrollee, Renewal, Schedule, DirectoryEnrollment, RecoveryExpiry };
}
