using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace CertPortal.Data;

/// <summary>One row of a bulk invitation sent with an <c>Idempotency-Key</c>, written in that row's invitation transaction
/// (token, audit record, queued message), so a retry of the same list with the same key knows exactly which rows were
/// invited, also after a crash: those are answered from here, the rest are invited. Kept for
/// <see cref="Mail.Invitations.IdempotencyWindow"/>.</summary>
public sealed class InvitationBatchRow
{
    /// <summary>SHA-256 of the caller and the key (a key is the caller's own: two admins may pick the same one).</summary>
    public byte[] KeyHash { get; set; } = [];
    /// <summary>1-based, as the answer numbers rows.</summary>
    public int Row { get; set; }
    /// <summary>SHA-256 of the request body as read: a retry must send the same list.</summary>
    public byte[] RequestHash { get; set; } = [];
    /// <summary>The row's token; its message is the invitation whose DedupeKey is this id.</summary>
    public Guid TokenId { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
}

internal sealed class InvitationBatchRowConfiguration : IEntityTypeConfiguration<InvitationBatchRow>
{
    public void Configure(EntityTypeBuilder<InvitationBatchRow> b)
    {
        b.HasKey(r => new { r.KeyHash, r.Row });
        b.Property(r => r.KeyHash).HasMaxLength(32);
        b.Property(r => r.RequestHash).HasMaxLength(32);
        // Rows older than the window are deleted by each keyed call.
        b.HasIndex(r => r.CreatedAt);
    }
}
