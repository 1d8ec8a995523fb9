using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace CertPortal.Data;

/// <summary>An e-mail waiting for, or done with, the SMTP server (the mail outbox). Written in the transaction
/// of the change it reports (a token, a revocation), so a crash or an SMTP outage delays a message but never
/// loses it. (<see cref="Kind"/>, <see cref="DedupeKey"/>) is unique: a reminder or notice found twice, by
/// two nodes or after a restart, is queued once. The body is rendered when sent from <see cref="Model"/>,
/// which holds no secret; an enrollment link is a secret and waits sealed in <see cref="SealedLink"/>,
/// erased once the message is sent or given up.</summary>
public sealed class OutboundMessage
{
    public long Id { get; set; }
    public string Kind { get; set; } = "";
    /// <summary>What makes this message unique within its kind: the token id, or serial + reminder day.</summary>
    public string DedupeKey { get; set; } = "";
    public string Recipient { get; set; } = "";
    public string Subject { get; set; } = "";
    /// <summary>JSON of what the message says (name, serial, dates, reason): nothing secret.</summary>
    public string Model { get; set; } = "";
    public byte[]? SealedLink { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset NextAttemptAt { get; set; }
    public int Attempts { get; set; }
    public string? LastError { get; set; }
    public DateTimeOffset? SentAt { get; set; }
    /// <summary>Set when the SMTP server refused the message for good (5xx) or it became pointless.</summary>
    public DateTimeOffset? FailedAt { get; set; }
    /// <summary>The node sending it now, until <see cref="LeaseExpiresAt"/>; a node that dies mid-send leaves the
    /// row to be taken over once the lease runs out.</summary>
    public string? LeasedBy { get; set; }
    public DateTimeOffset? LeaseExpiresAt { get; set; }

    public string Status => SentAt is not null ? "sent" : FailedAt is not null ? "failed" : "queued";
}

public static class OutboundMessageKinds
{
    public const string Invitation = "invitation";
    public const string ExpiryReminder = "expiry-reminder";
    public const string RevocationNotice = "revocation-notice";
    public const string HoldNotice = "hold-notice";
    public const string ReleaseNotice = "release-notice";

    public static readonly IReadOnlyList<string> All = [Invitation, ExpiryReminder, RevocationNotice, HoldNotice, ReleaseNotice];
}

internal sealed class OutboundMessageConfiguration : IEntityTypeConfiguration<OutboundMessage>
{
    public void Configure(EntityTypeBuilder<OutboundMessage> b)
    {
        b.HasKey(m => m.Id);
        b.Property(m => m.Kind).HasMaxLength(32);
        b.Property(m => m.DedupeKey).HasMaxLength(128);
        b.Property(m => m.Recipient).HasMaxLength(Mailbox.MaxLength);
        b.Property(m => m.Subject).HasMaxLength(256);
        b.Property(m => m.Model).HasMaxLength(4096);
        b.Property(m => m.LastError).HasMaxLength(1024);
        b.Property(m => m.LeasedBy).HasMaxLength(64);
        b.HasIndex(m => new { m.Kind, m.DedupeKey }).IsUnique();
        b.HasIndex(m => new { m.SentAt, m.FailedAt, m.NextAttemptAt });
        b.HasIndex(m => m.Recipient);
    }
}
