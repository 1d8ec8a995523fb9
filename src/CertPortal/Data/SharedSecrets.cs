using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace CertPortal.Data;

/// <summary>Something every node must hold the same copy of and that therefore cannot live on one node's
/// disk: the CA certificates with their encrypted keys, the sealed recovery session key. Values are
/// ciphertext or public data; what opens them (CertPortal:Ca:KeyPassphrase) is never in the database.</summary>
public sealed class SharedSecret
{
    public string Name { get; set; } = "";
    public byte[] Value { get; set; } = [];
    public DateTimeOffset CreatedAt { get; set; }
}

public static class SharedSecretNames
{
    public const string RootCa = "ca:root";
    public const string IssuingCa = "ca:issuing";
    public const string RecoverySessionKey = "recovery-session-key";

    public static string Ca(string authority) => "ca:" + authority;
}

internal sealed class SharedSecretConfiguration : IEntityTypeConfiguration<SharedSecret>
{
    public void Configure(EntityTypeBuilder<SharedSecret> b)
    {
        b.HasKey(s => s.Name);
        b.Property(s => s.Name).HasMaxLength(64);
    }
}
