using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace CertPortal.Data;

/// <summary>A key recovery agent: an account with the recovery-agent role and the certificate whose
/// public key its shares are encrypted to. The agent's private key never reaches the server.</summary>
public sealed class RecoveryAgent
{
    public Guid Id { get; set; }
    public Guid AccountId { get; set; }
    public string Name { get; set; } = "";
    public byte[] CertificateDer { get; set; } = [];
    public string CertificateSha256 { get; set; } = "";
    public DateTimeOffset RegisteredAt { get; set; }
    public DateTimeOffset? RetiredAt { get; set; }
}

/// <summary>An archived encryption key: PKCS#8 sealed with AES-256-GCM under a data key that exists
/// only as Shamir shares, each encrypted to one agent. The server alone cannot open it.</summary>
public sealed class KeyEscrow
{
    public Guid Id { get; set; }
    public string SerialNumber { get; set; } = "";
    public int Threshold { get; set; }
    public byte[] Envelope { get; set; } = [];
    public DateTimeOffset CreatedAt { get; set; }
    /// <summary>Set when a re-escrow moved the key to a new data key and agent set; the old envelope is
    /// then emptied and its shares deleted, so the old agents' shares open nothing.</summary>
    public DateTimeOffset? SupersededAt { get; set; }
    /// <summary>Self-service renewal with a requestId: the PKCS#12 handed out, sealed under a key derived from the
    /// requestId (never stored), so a client that lost the answer can collect it. Erased after a day. (Token
    /// enrollment keeps its copy on the token.)</summary>
    public byte[]? RetryPackage { get; set; }
    public List<EscrowShare> Shares { get; set; } = [];
}

public sealed class EscrowShare
{
    public Guid Id { get; set; }
    public Guid EscrowId { get; set; }
    public Guid AgentId { get; set; }
    /// <summary>CMS EnvelopedData (DER) to the agent's certificate, holding the share (x || y).</summary>
    public byte[] EncryptedShare { get; set; } = [];
    /// <summary>SHA-256 commitment, so each submitted share is checked on its own.</summary>
    public byte[] Commitment { get; set; } = [];
}

/// <summary>An admin's request to recover (or re-escrow) one archived key, approved by M agents.</summary>
public sealed class RecoveryRequest
{
    public Guid Id { get; set; }
    public Guid EscrowId { get; set; }
    public string SerialNumber { get; set; } = "";
    public RecoveryPurpose Purpose { get; set; } = RecoveryPurpose.Recover;
    public string Reason { get; set; } = "";
    public string RequestedBy { get; set; } = "";
    public DateTimeOffset CreatedAt { get; set; }
    public DateTimeOffset ExpiresAt { get; set; }
    public DateTimeOffset? CompletedAt { get; set; }
    public DateTimeOffset? CancelledAt { get; set; }
    /// <summary>When the expiry pass audited this request's expiry (<c>recovery.expired</c>); null until then. Expiry itself is
    /// <see cref="ExpiresAt"/> passing: this column only makes the audit record one, however many nodes find it.</summary>
    public DateTimeOffset? ExpiryAuditedAt { get; set; }
    /// <summary>The self-signed certificate (DER) agents seal their shares to for this request (<c>RecoverySubmissionKey</c>);
    /// made on the first share download.</summary>
    public byte[]? SubmissionCertificate { get; set; }
    /// <summary>Its private key, sealed under the recovery session key; null before the first download and after the request ended.</summary>
    public byte[]? SealedSubmissionKey { get; set; }
    public List<RecoveryApproval> Approvals { get; set; } = [];

    public RecoveryStatus StatusAt(DateTimeOffset now, int threshold) =>
        StatusOf(CompletedAt, CancelledAt, ExpiresAt, Approvals.Count, threshold, now);

    /// <summary>The status from the columns alone, for queries that project them instead of loading the approvals.</summary>
    public static RecoveryStatus StatusOf(DateTimeOffset? completedAt, DateTimeOffset? cancelledAt, DateTimeOffset expiresAt,
        int approvals, int threshold, DateTimeOffset now) =>
        completedAt is not null ? RecoveryStatus.Completed
        : cancelledAt is not null ? RecoveryStatus.Cancelled
        : expiresAt <= now ? RecoveryStatus.Expired
        : approvals >= threshold ? RecoveryStatus.Ready
        : RecoveryStatus.Open;
}

/// <summary>What a recovery request is for: the key itself (<c>recover</c>) or moving its escrow to the
/// current agents (<c>re-escrow</c>). Stored and shown under those names (<see cref="RecoveryPurposeNames"/>).</summary>
public enum RecoveryPurpose { Recover, ReEscrow }

/// <summary>Computed, never stored: it depends on the clock and on the escrow's threshold.</summary>
public enum RecoveryStatus { Open, Ready, Completed, Expired, Cancelled }

/// <summary>The names of <see cref="RecoveryPurpose"/> in the database, the API and the console. They
/// predate the enum, so they are not its camelCase names.</summary>
internal static class RecoveryPurposeNames
{
    public const string Recover = "recover";
    public const string ReEscrow = "re-escrow";

    public static string Of(RecoveryPurpose purpose) => purpose == RecoveryPurpose.ReEscrow ? ReEscrow : Recover;

    public static bool TryParse(string? name, out RecoveryPurpose purpose)
    {
        purpose = name switch { ReEscrow => RecoveryPurpose.ReEscrow, _ => RecoveryPurpose.Recover };
        return name is Recover or ReEscrow;
    }

    public static RecoveryPurpose FromStored(string name) =>
        TryParse(name, out var purpose) ? purpose : throw new InvalidOperationException($"Unknown recovery purpose '{name}' in the database.");
}

/// <summary>One agent's approval: its decrypted share, kept only until the request completes or
/// expires, and then only sealed under the server's session key (never in plain text at rest).</summary>
public sealed class RecoveryApproval
{
    public Guid RequestId { get; set; }
    public Guid AgentId { get; set; }
    public DateTimeOffset ApprovedAt { get; set; }
    public byte[]? SealedShare { get; set; }
}

internal sealed class EscrowConfigurations :
    IEntityTypeConfiguration<RecoveryAgent>, IEntityTypeConfiguration<KeyEscrow>, IEntityTypeConfiguration<EscrowShare>,
    IEntityTypeConfiguration<RecoveryRequest>, IEntityTypeConfiguration<RecoveryApproval>
{
    public void Configure(EntityTypeBuilder<RecoveryAgent> b)
    {
        b.HasKey(a => a.Id);
        b.Property(a => a.Name).HasMaxLength(64);
        b.Property(a => a.CertificateSha256).HasMaxLength(64);
        b.HasIndex(a => a.AccountId);
    }

    public void Configure(EntityTypeBuilder<KeyEscrow> b)
    {
        b.HasKey(e => e.Id);
        b.Property(e => e.SerialNumber).HasMaxLength(64);
        b.HasIndex(e => e.SerialNumber);
        b.HasMany(e => e.Shares).WithOne().HasForeignKey(s => s.EscrowId);
    }

    public void Configure(EntityTypeBuilder<EscrowShare> b)
    {
        b.HasKey(s => s.Id);
        b.HasIndex(s => new { s.EscrowId, s.AgentId }).IsUnique();
        b.Property(s => s.Commitment).HasMaxLength(32);
    }

    public void Configure(EntityTypeBuilder<RecoveryRequest> b)
    {
        b.HasKey(r => r.Id);
        b.Property(r => r.SerialNumber).HasMaxLength(64);
        // The existing strings, not the enum's names: no migration, and rows written before the enum still read.
        b.Property(r => r.Purpose).HasConversion(p => RecoveryPurposeNames.Of(p), s => RecoveryPurposeNames.FromStored(s)).HasMaxLength(16);
        b.Property(r => r.Reason).HasMaxLength(256);
        b.Property(r => r.RequestedBy).HasMaxLength(128);
        b.HasMany(r => r.Approvals).WithOne().HasForeignKey(a => a.RequestId);
    }

    public void Configure(EntityTypeBuilder<RecoveryApproval> b) => b.HasKey(a => new { a.RequestId, a.AgentId });
}

/// <summary>The escrow policy as changed through the admin API (one row); absent, configuration applies.</summary>
public sealed class EscrowPolicyRecord
{
    public int Id { get; set; } = 1;
    public int Threshold { get; set; }
    /// <summary>N; null: the configured <c>Escrow:MinimumAgents</c>.</summary>
    public int? MinimumAgents { get; set; }
    public KeyGenerationPolicy EncryptionKeyGeneration { get; set; }
    public KeyGenerationPolicy DualKeyGeneration { get; set; }
    public DateTimeOffset UpdatedAt { get; set; }
    public string UpdatedBy { get; set; } = "";
}

internal sealed class EscrowPolicyRecordConfiguration : IEntityTypeConfiguration<EscrowPolicyRecord>
{
    public void Configure(EntityTypeBuilder<EscrowPolicyRecord> b)
    {
        b.HasKey(p => p.Id);
        b.Property(p => p.Id).ValueGeneratedNever();
        b.Property(p => p.EncryptionKeyGeneration).HasConversion<string>().HasMaxLength(16);
        b.Property(p => p.DualKeyGeneration).HasConversion<string>().HasMaxLength(16);
        b.Property(p => p.UpdatedBy).HasMaxLength(128);
    }
}
