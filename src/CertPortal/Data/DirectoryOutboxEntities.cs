using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace CertPortal.Data;

/// <summary>Something the LDAP directory must be brought in step with, written in the same transaction
/// as the change that caused it (the outbox pattern), so a directory that is down delays publication
/// but never loses it. Each row names an entry to reconcile, not a delta: the worker makes that entry
/// match the database as it is when the row is handled, so rows are idempotent and order-safe.</summary>
public sealed class DirectoryPublication
{
    public long Id { get; set; }
    public string Kind { get; set; } = "";
    /// <summary>The mailbox for <see cref="DirectoryPublicationKinds.Person"/>; the kind's name otherwise.</summary>
    public string Key { get; set; } = "";
    /// <summary>Why it was queued (issued, revoked, expiry, crl, resync...), for operators.</summary>
    public string Reason { get; set; } = "";
    public string? SerialNumber { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    /// <summary>Not before this time: the next retry, or a scheduled expiry.</summary>
    public DateTimeOffset NextAttemptAt { get; set; }
    public int Attempts { get; set; }
    public string? LastError { get; set; }
    public DateTimeOffset? CompletedAt { get; set; }
    /// <summary>The node working on this row until <see cref="LeaseExpiresAt"/>; null when unclaimed.</summary>
    public string? LeasedBy { get; set; }
    public DateTimeOffset? LeaseExpiresAt { get; set; }
}

public static class DirectoryPublicationKinds
{
    /// <summary>Make one person's entry hold exactly the certificates the database says should be published.</summary>
    public const string Person = "person";
    /// <summary>Write the CA certificates and the newest issuing CRL to the PKI entry.</summary>
    public const string Pki = "pki";
    /// <summary>Find entries holding our certificates that the database does not expect (resync).</summary>
    public const string Sweep = "sweep";
}

internal sealed class DirectoryPublicationConfiguration : IEntityTypeConfiguration<DirectoryPublication>
{
    public void Configure(EntityTypeBuilder<DirectoryPublication> b)
    {
        b.HasKey(p => p.Id);
        b.Property(p => p.Kind).HasMaxLength(16);
        b.Property(p => p.Key).HasMaxLength(Mailbox.MaxLength);
        b.Property(p => p.Reason).HasMaxLength(32);
        b.Property(p => p.SerialNumber).HasMaxLength(64);
        b.Property(p => p.LastError).HasMaxLength(1024);
        b.Property(p => p.LeasedBy).HasMaxLength(64);
        b.HasIndex(p => new { p.CompletedAt, p.NextAttemptAt });
        b.HasIndex(p => p.Key);
    }
}
