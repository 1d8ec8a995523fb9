using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace CertPortal.Data;

/// <summary>A public key that must never be certified again (S/MIME BR 6.1.1.3 (4)): revoked for
/// keyCompromise, or reported compromised. Rows are never deleted.</summary>
public sealed class BlockedKey
{
    /// <summary>SHA-256 of the DER SubjectPublicKeyInfo, upper-case hex (the key's identity for every lookup).</summary>
    public string SpkiSha256 { get; set; } = "";
    public string KeyAlgorithm { get; set; } = "";
    public DateTimeOffset BlockedAt { get; set; }
    public string BlockedBy { get; set; } = "";
    /// <summary><c>certificate:SERIAL</c> (revoked for keyCompromise) or <c>report</c> (POST /api/v1/blocked-keys).</summary>
    public string Source { get; set; } = "";
    public string? Comment { get; set; }
}

internal sealed class BlockedKeyConfiguration : IEntityTypeConfiguration<BlockedKey>
{
    public void Configure(EntityTypeBuilder<BlockedKey> b)
    {
        b.HasKey(k => k.SpkiSha256);
        b.Property(k => k.SpkiSha256).HasMaxLength(64);
        b.Property(k => k.KeyAlgorithm).HasMaxLength(16);
        b.Property(k => k.BlockedBy).HasMaxLength(128);
        b.Property(k => k.Source).HasMaxLength(128);
        b.Property(k => k.Comment).HasMaxLength(512);
        b.HasIndex(k => k.BlockedAt);
    }
}
