using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace CertPortal.Data;

/// <summary>A person or script that administers, audits, or recovers keys. Signs in to the console
/// with a password (hashed with PBKDF2) and/or calls the API with its own key (stored as SHA-256).</summary>
public sealed class Account
{
    public Guid Id { get; set; }
    /// <summary>Lower-case login name, unique.</summary>
    public string Name { get; set; } = "";
    public string DisplayName { get; set; } = "";
    /// <summary>One of <see cref="Security.Roles"/>.</summary>
    public string Role { get; set; } = "";
    public byte[]? ApiKeyHash { get; set; }
    public string? PasswordHash { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public string CreatedBy { get; set; } = "";
    public DateTimeOffset? DisabledAt { get; set; }
    /// <summary>Raised by every sign-out: a console cookie carries the value it was issued under, and one that no longer
    /// matches is refused (Security/ConsoleSessions), so a copy of a signed-out cookie is worthless.</summary>
    public int SessionEpoch { get; set; }
}

internal sealed class AccountConfiguration : IEntityTypeConfiguration<Account>
{
    public void Configure(EntityTypeBuilder<Account> b)
    {
        b.HasKey(a => a.Id);
        b.Property(a => a.Name).HasMaxLength(64);
        b.HasIndex(a => a.Name).IsUnique();
        b.Property(a => a.DisplayName).HasMaxLength(128);
        b.Property(a => a.Role).HasMaxLength(32);
        b.Property(a => a.ApiKeyHash).HasMaxLength(32);
        b.HasIndex(a => a.ApiKeyHash).IsUnique();
        b.Property(a => a.PasswordHash).HasMaxLength(256);
        b.Property(a => a.CreatedBy).HasMaxLength(128);
    }
}
