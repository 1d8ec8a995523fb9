using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace CertPortal.Data;

/// <summary>"The certificates of this mailbox changed" (issued, revoked, held, released), written in the same
/// transaction as the change. Every node polls the rows after the last one it saw and drops its cached look-up
/// answers for those mailboxes, so a cache never outlives a change made on another node. Rows are kept an hour.</summary>
public sealed class CertificateChange
{
    public long Id { get; set; }
    /// <summary>Lower-cased, as the look-up compares mailboxes.</summary>
    public string Email { get; set; } = "";
    public DateTimeOffset At { get; set; }
}

internal sealed class CertificateChangeConfiguration : IEntityTypeConfiguration<CertificateChange>
{
    public void Configure(EntityTypeBuilder<CertificateChange> b)
    {
        b.HasKey(c => c.Id);
        b.Property(c => c.Email).HasMaxLength(Mailbox.MaxLength);
        b.HasIndex(c => c.At);
    }
}
