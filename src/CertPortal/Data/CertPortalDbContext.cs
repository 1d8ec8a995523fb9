using CertPortal.Authority;
using CertPortal.Security;
using Microsoft.AspNetCore.DataProtection.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Microsoft.EntityFrameworkCore.Storage.ValueConversion;

namespace CertPortal.Data;

/// <summary>The one database. Provider-specific subclasses exist only so each provider has its
/// own migrations (EF Core cannot share one migration set between SQLite and PostgreSQL).</summary>
public abstract class CertPortalDbContext(DbContextOptions options) : DbContext(options), IDataProtectionKeyContext
{
    public DbSet<EnrollmentToken> EnrollmentTokens => Set<EnrollmentToken>();
    public DbSet<IssuedCertificate> Certificates => Set<IssuedCertificate>();
    public DbSet<CrlRecord> Crls => Set<CrlRecord>();
    public DbSet<CrlChange> CrlChanges => Set<CrlChange>();
    public DbSet<AuditEvent> AuditEvents => Set<AuditEvent>();
    public DbSet<CertificateChange> CertificateChanges => Set<CertificateChange>();
    public DbSet<Account> Accounts => Set<Account>();
    public DbSet<DirectoryPublication> DirectoryPublications => Set<DirectoryPublication>();
    public DbSet<OutboundMessage> OutboundMessages => Set<OutboundMessage>();
    public DbSet<RecoveryAgent> RecoveryAgents => Set<RecoveryAgent>();
    public DbSet<KeyEscrow> KeyEscrows => Set<KeyEscrow>();
    public DbSet<EscrowShare> EscrowShares => Set<EscrowShare>();
    public DbSet<RecoveryRequest> RecoveryRequests => Set<RecoveryRequest>();
    public DbSet<RecoveryApproval> RecoveryApprovals => Set<RecoveryApproval>();
    public DbSet<EscrowPolicyRecord> EscrowPolicy => Set<EscrowPolicyRecord>();
    public DbSet<SharedSecret> SharedSecrets => Set<SharedSecret>();
    /// <summary>ASP.NET Core Data Protection's key ring (sealed, see Cluster/SharedDataProtection.cs), shared so
    /// a console cookie or antiforgery token made by one node is read by every other.</summary>
    public DbSet<DataProtectionKey> DataProtectionKeys => Set<DataProtectionKey>();
    public DbSet<BlockedKey> BlockedKeys => Set<BlockedKey>();
    public DbSet<DirectoryEnrollmentRun> DirectoryEnrollmentRuns => Set<DirectoryEnrollmentRun>();
    public DbSet<InvitationBatchRow> InvitationBatchRows => Set<InvitationBatchRow>();

    /// <summary>Whether other nodes may share this database. Several nodes need PostgreSQL (README, "Running several nodes"); a
    /// SQLite file serves one node, so rows only another node would read (the look-up cache's change log) are not written there.</summary>
    public abstract bool SharedByNodes { get; }

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(CertPortalDbContext).Assembly,
            t => t.Namespace == typeof(CertPortalDbContext).Namespace);

    protected override void ConfigureConventions(ModelConfigurationBuilder configurationBuilder)
    {
        configurationBuilder.Properties<CertificateProfileName>().HaveConversion<EnumToStringConverter<CertificateProfileName>>().HaveMaxLength(16);
        configurationBuilder.Properties<RevocationReason>().HaveConversion<EnumToStringConverter<RevocationReason>>().HaveMaxLength(32);
    }
}

public sealed class SqliteCertPortalDbContext(DbContextOptions<SqliteCertPortalDbContext> options) : CertPortalDbContext(options)
{
    public override bool SharedByNodes => false;

    protected override void ConfigureConventions(ModelConfigurationBuilder configurationBuilder)
    {
        base.ConfigureConventions(configurationBuilder);
        // SQLite has no timestamp type EF can compare or sort in SQL; UTC ticks as INTEGER sort correctly.
        configurationBuilder.Properties<DateTimeOffset>().HaveConversion<UtcTicksConverter>();
    }

    private sealed class UtcTicksConverter() : ValueConverter<DateTimeOffset, long>(
        v => v.UtcTicks, v => new DateTimeOffset(v, TimeSpan.Zero));
}

public sealed class NpgsqlCertPortalDbContext(DbContextOptions<NpgsqlCertPortalDbContext> options) : CertPortalDbContext(options)
{
    public override bool SharedByNodes => true;

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        base.OnModelCreating(modelBuilder);
        // Every token is updated once, when it is spent (or revoked). With full pages (fillfactor 100) a third of those UPDATEs
        // found no room in the row's page and were not HOT: a new row elsewhere and an entry in each of the table's three
        // indexes. Room left in each page keeps them HOT (97 % against 69 % over 11,600 enrollments).
        modelBuilder.Entity<EnrollmentToken>().HasStorageParameter("fillfactor", 70);
    }
}

internal sealed class EnrollmentTokenConfiguration : IEntityTypeConfiguration<EnrollmentToken>
{
    public void Configure(EntityTypeBuilder<EnrollmentToken> b)
    {
        b.HasKey(t => t.Id);
        b.HasIndex(t => t.TokenHash).IsUnique();
        b.Property(t => t.TokenHash).HasMaxLength(32);
        b.Property(t => t.Email).HasMaxLength(Mailbox.MaxLength);
        b.Property(t => t.DisplayName).HasMaxLength(128);
        b.Property(t => t.CreatedBy).HasMaxLength(128);
        b.Property(t => t.RevokedBy).HasMaxLength(128);
        b.Property(t => t.CertificateSerial).HasMaxLength(64);
        b.HasIndex(t => t.Email);
        // Each run that invites reads the job's links that still work, to withdraw those of people who left. Partial: most
        // tokens are made by hand (and every benchmark token), and an index entry for each would be written for nothing.
        b.HasIndex(t => t.DirectoryEnrollmentRunId).HasFilter("\"DirectoryEnrollmentRunId\" IS NOT NULL");
    }
}

internal sealed class IssuedCertificateConfiguration : IEntityTypeConfiguration<IssuedCertificate>
{
    public void Configure(EntityTypeBuilder<IssuedCertificate> b)
    {
        b.HasKey(c => c.SerialNumber);
        b.Property(c => c.SerialNumber).HasMaxLength(64);
        b.Property(c => c.Email).HasMaxLength(Mailbox.MaxLength);
        b.Property(c => c.DisplayName).HasMaxLength(128);
        b.Property(c => c.KeyAlgorithm).HasMaxLength(16);
        b.Property(c => c.SubjectDn).HasMaxLength(1024);
        // Mailboxes are compared without regard to case (their local parts are ASCII, so lower() is exact on both databases):
        // the index is on lower("Email"), made by the migration EmailLowerIndex, as EF Core's model has no expression indexes.
        // A plain index on "Email" left the recipient look-up's lower("Email") = @key to scan the table on every cache miss
        // (a gateway asking for an unknown outside recipient: one scan per address every Lookup:MaxStaleness). Queries for one
        // mailbox say lower("Email") = lower(@mailbox) to use it. A later migration that rebuilds Certificates on SQLite drops
        // it with the table: create it again there (CertificateIndexTests lists it).
        // The SHA-256 fingerprint is neither stored nor indexed: it is made from the DER when shown (see IssuedCertificate).
        // An index keyed by a hash took every insert to a random leaf page, which the group writer wrote to the WAL once
        // more per certificate.
        b.Ignore(c => c.Sha256Fingerprint);
        // A keyCompromise revocation finds every other certificate with the same key through this index.
        b.Property(c => c.SpkiSha256).HasMaxLength(64);
        b.HasIndex(c => c.SpkiSha256);
        // One token, one certificate: the database itself refuses a second. Only rows that have one are indexed (NULLs never
        // collide, and a look-up by value implies NOT NULL): on PostgreSQL a revocation's UPDATE is not HOT (an indexed column
        // changes), so it adds an entry to every index, and here an entry into a run of NULLs (certificates without a token or
        // a renewal) cost more than the others.
        b.HasIndex(c => c.TokenId).IsUnique().HasFilter("\"TokenId\" IS NOT NULL");
        b.Property(c => c.RenewalOf).HasMaxLength(64);
        b.Property(c => c.RenewedBy).HasMaxLength(64);
        // One renewal, one certificate, as with tokens.
        b.HasIndex(c => c.RenewalOf).IsUnique().HasFilter("\"RenewalOf\" IS NOT NULL");
        // The CRL signer streams the revoked certificates in serial order with what each entry needs: a partial index
        // that holds exactly those rows in that order, so a CRL of a million entries needs neither a sort nor a table read.
        b.HasIndex(c => new { c.SerialNumber, c.RevokedAt, c.RevocationReason, c.NotAfter }, "IX_Certificates_Revoked")
            .HasFilter("\"RevokedAt\" IS NOT NULL");
    }
}

internal sealed class CrlRecordConfiguration : IEntityTypeConfiguration<CrlRecord>
{
    public void Configure(EntityTypeBuilder<CrlRecord> b)
    {
        // The key makes CRL numbers unique per CA, so two concurrent signers cannot both publish number N.
        b.HasKey(c => new { c.Authority, c.Number });
        b.Property(c => c.Authority).HasMaxLength(16);
    }
}

internal sealed class CrlChangeConfiguration : IEntityTypeConfiguration<CrlChange>
{
    public void Configure(EntityTypeBuilder<CrlChange> b)
    {
        b.HasKey(c => c.Id);
        b.Property(c => c.Authority).HasMaxLength(16);
        b.Property(c => c.SerialNumber).HasMaxLength(64);
    }
}

internal sealed class AuditEventConfiguration : IEntityTypeConfiguration<AuditEvent>
{
    public void Configure(EntityTypeBuilder<AuditEvent> b)
    {
        b.HasKey(a => a.Id);
        b.Property(a => a.Actor).HasMaxLength(128);
        b.Property(a => a.Action).HasMaxLength(64);
        b.Property(a => a.Target).HasMaxLength(256);
        // The sign-in throttle counts an account's recent sign-ins; nothing else reads events by time (the console and the API
        // page by id). Only sign-in events are indexed: an index over every event's time took one more page per group commit
        // of enrollments, revocations and token creations.
        b.HasIndex(a => new { a.Actor, a.At }, "IX_AuditEvents_SignIns")
            .HasFilter($"\"Action\" IN ('{SignInThrottle.FailedAction}', '{SignInThrottle.SucceededAction}')");
    }
}
