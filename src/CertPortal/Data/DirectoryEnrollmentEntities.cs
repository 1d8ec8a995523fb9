using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace CertPortal.Data;

/// <summary>One run of directory-driven enrollment (scheduled or asked for): what it found and did. A scheduled run is
/// started by inserting this row under a cluster-wide lock, so one node runs each period.</summary>
public sealed class DirectoryEnrollmentRun
{
    public long Id { get; set; }
    public DateTimeOffset StartedAt { get; set; }
    /// <summary>"schedule", or the account that asked.</summary>
    public string StartedBy { get; set; } = "";
    public bool DryRun { get; set; }
    public DateTimeOffset? FinishedAt { get; set; }
    /// <summary>People with a mailbox under the base DN (and in the group).</summary>
    public int Found { get; set; }
    public int AlreadyEnrolled { get; set; }
    public int RecentlyInvited { get; set; }
    /// <summary>Invited (in a dry run: would have been).</summary>
    public int Invited { get; set; }
    public int Failed { get; set; }
    /// <summary>Left for the next run by the per-run limit.</summary>
    public int Deferred { get; set; }
    /// <summary>Links the job had mailed to people no longer found in the directory (or the group), revoked by this run (in a
    /// dry run: would have been).</summary>
    public int Withdrawn { get; set; }
    public string? Error { get; set; }
}

internal sealed class DirectoryEnrollmentRunConfiguration : IEntityTypeConfiguration<DirectoryEnrollmentRun>
{
    public void Configure(EntityTypeBuilder<DirectoryEnrollmentRun> b)
    {
        b.HasKey(r => r.Id);
        b.Property(r => r.StartedBy).HasMaxLength(128);
        b.Property(r => r.Error).HasMaxLength(1000);
        b.HasIndex(r => r.StartedAt);
    }
}
