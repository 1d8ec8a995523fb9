using Microsoft.EntityFrameworkCore;

namespace CertPortal.Data;

/// <summary>One reading of the clock that leases on shared work (the mail and directory outboxes) are timed on.</summary>
/// <param name="Shared">The clock every node writes and compares lease ends with: the database server's on PostgreSQL.</param>
/// <param name="Own">This node's clock (its TimeProvider), read just before <paramref name="Shared"/>. A lease written as
/// <c>Shared + length</c> ends no earlier than <c>Own + length</c> on this node's clock, which is how long the holder
/// may work.</param>
public readonly record struct LeaseTime(DateTimeOffset Shared, DateTimeOffset Own);

/// <summary>Where leases are timed. On PostgreSQL, where several nodes share the work, every lease end is written and compared
/// on the database server's clock; on SQLite (one process) on the node's TimeProvider, as before.
/// <para>Why the database's clock: a lease is only as good as the clocks that compare it. Timed on each node's own clock, a
/// node whose clock ran behind the others' wrote leases that had already ended for them (a minute behind, at once) while it
/// still sent the message or wrote the entry, and a node whose clock ran ahead took rows the others still held;
/// Mail:LeaseMargin and Directory:TimeoutSeconds cover seconds, not that. Detecting the skew instead (comparing each node's
/// clock with the database's, and claiming nothing past a bound) needs a bound, a check cadence and an operator to notice a
/// node that stopped working; on one clock, no node's clock can matter. What a holder still measures on its own clock is how
/// long it has (a send's deadline, a write's margin), from a reading taken before the database's, so its deadline comes
/// before the lease ends: that depends on the clocks running at the same rate during one lease, not on their agreeing.</para>
/// <para>The database's clock is read before the statement that uses it (clock_timestamp(): the time now, not the
/// transaction's start), a round trip per claim, so the claims stay one LINQ query for both providers. A reading slightly old
/// when the claim runs is on the safe side: another node's lease looks live a moment longer, and this node's a moment
/// shorter.</para></summary>
public static class LeaseClock
{
    public static async Task<LeaseTime> ReadLeaseClockAsync(this CertPortalDbContext db, TimeProvider time, CancellationToken ct)
    {
        var own = time.GetUtcNow();
        if (db is not NpgsqlCertPortalDbContext) return new LeaseTime(own, own);
        var shared = await db.Database.SqlQuery<DateTimeOffset>($"SELECT clock_timestamp() AS \"Value\"").SingleAsync(ct);
        return new LeaseTime(shared, own);
    }
}
