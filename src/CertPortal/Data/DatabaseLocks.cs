using Microsoft.EntityFrameworkCore;

namespace CertPortal.Data;

/// <summary>The one place that knows how each database provider locks. Features say what they need
/// (this row, this named resource) and never compare provider names themselves.
/// SQLite needs none of it: a write transaction (BEGIN IMMEDIATE) already excludes every other writer,
/// so each method is a no-op there. PostgreSQL runs writers concurrently under read committed, so a
/// read-decide-write sequence must lock what it reads first.</summary>
public static class DatabaseLocks
{
    /// <summary>Locks one certificate row until the caller's transaction ends (SELECT … FOR UPDATE), so the
    /// caller's next read sees any change committed by a concurrent writer of the same row.</summary>
    public static async Task LockCertificateAsync(this CertPortalDbContext db, string serialNumber, CancellationToken ct)
    {
        if (!db.Database.IsNpgsql()) return;
        await db.Database.ExecuteSqlAsync($"SELECT 1 FROM \"Certificates\" WHERE \"SerialNumber\" = {serialNumber} FOR UPDATE", ct);
    }

    /// <summary>A transaction-scoped named lock (pg_advisory_xact_lock): held until the caller's transaction
    /// commits or rolls back, so whoever takes it next reads what the holder committed.</summary>
    public static async Task LockNamedAsync(this CertPortalDbContext db, string name, CancellationToken ct)
    {
        if (!db.Database.IsNpgsql()) return;
        await db.Database.ExecuteSqlAsync($"SELECT pg_advisory_xact_lock(hashtext({"certportal:" + name}))", ct);
    }

    /// <summary>True where concurrent writers can interleave (PostgreSQL): work queues must then claim rows
    /// (FOR UPDATE SKIP LOCKED plus a lease) instead of assuming they are the only worker.</summary>
    public static bool HasConcurrentWriters(this CertPortalDbContext db) => db.Database.IsNpgsql();
}
