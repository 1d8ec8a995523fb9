using System.Security.Claims;
using System.Text.Json;
using CertPortal.Data;

namespace CertPortal.Auditing;

/// <summary>Adds audit events to the caller's unit of work, so an event commits or rolls back with
/// the change it describes. Details never hold a secret.</summary>
public static class AuditLog
{
    public static void Record(CertPortalDbContext db, DateTimeOffset at, string actor, string action, string target, object? details = null) =>
        db.AuditEvents.Add(Event(at, actor, action, target, details));

    /// <summary>Writes the event at once, in the caller's transaction (see <see cref="DirectSql"/>): the hot paths'
    /// way, with the same row as <see cref="Record"/>.</summary>
    public static Task RecordNowAsync(CertPortalDbContext db, DateTimeOffset at, string actor, string action, string target, object? details,
        CancellationToken ct) =>
        DirectSql.InsertAuditAsync(db, Event(at, actor, action, target, details), ct);

    /// <summary>Writes an event made beforehand with <see cref="Event"/>: the group writer's units make theirs (the details'
    /// JSON) before their turn, so the one writer spends its turn on the database only.</summary>
    public static Task RecordNowAsync(CertPortalDbContext db, AuditEvent e, CancellationToken ct) => DirectSql.InsertAuditAsync(db, e, ct);

    public static AuditEvent Event(DateTimeOffset at, string actor, string action, string target, object? details) => new()
    {
        At = at,
        Actor = Truncate(actor, 128),
        Action = action,
        Target = Truncate(target, 256),
        Details = details is null ? null : JsonSerializer.Serialize(details, JsonSerializerOptions.Web),
    };

    public static string ActorOf(ClaimsPrincipal? user) =>
        user?.Identity?.IsAuthenticated == true ? user.Identity.Name ?? AuditActors.Unknown : AuditActors.Anonymous;

    private static string Truncate(string s, int max) => s.Length <= max ? s : s[..max];
}

public static class AuditActions
{
    public const string TokenCreated = "token.created";
    public const string TokenRevoked = "token.revoked";
    public const string InvitationQueued = "invitation.queued";
    public const string CertificateIssued = "certificate.issued";
    public const string CertificateRevoked = "certificate.revoked";
    public const string CertificateRenewed = "certificate.renewed";
    public const string CertificateHoldReleased = "certificate.hold-released";
    public const string KeyBlocked = "key.blocked";
    public const string CrlSigned = "crl.signed";
    public const string AccountCreated = "account.created";
    public const string AccountDisabled = "account.disabled";
    public const string AccountRoleChanged = "account.role-changed";
    public const string AccountSignedOut = "account.signed-out";
    public const string DirectoryResync = "directory.resync";
    public const string KeyEscrowed = "key.escrowed";
    public const string AgentRegistered = "recovery-agent.registered";
    public const string AgentRetired = "recovery-agent.retired";
    public const string EscrowPolicyChanged = "escrow.policy-changed";
    public const string RecoveryRequested = "recovery.requested";
    public const string RecoveryShareDownloaded = "recovery.share-downloaded";
    public const string RecoveryApproved = "recovery.approved";
    public const string RecoveryCompleted = "recovery.completed";
    public const string RecoveryFailed = "recovery.failed";
    public const string RecoveryCancelled = "recovery.cancelled";
    public const string RecoveryExpired = "recovery.expired";
    public const string KeyReEscrowed = "key.re-escrowed";
}
