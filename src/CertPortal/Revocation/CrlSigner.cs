using System.Security.Cryptography.X509Certificates;
using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Revocation;

/// <summary>Signs CRLs (RFC 5280 §5) into the caller's transaction, under a cluster-wide lock per CA, so one node
/// signs each CRL: the number is the previous + 1, and thisUpdate is now (whole seconds), never before the previous
/// one's however the nodes' clocks differ, and never after now: a CRL whose thisUpdate is still to come is "not yet
/// valid" to OpenSSL and NSS, so the revocations in it would not count. To keep thisUpdate (and so Last-Modified,
/// by which clients revalidate) strictly increasing as well, a CRL due in the second of the previous one waits for the
/// next second (at most one). The CRL replaces the previous one: only the latest is kept.</summary>
public sealed class CrlSigner(CaHierarchy ca, CertPortalOptions options, TimeProvider time, IEnumerable<ICertificateEvents> observers)
{
    /// <summary>Signs the next CRL of <paramref name="authority"/> into <paramref name="db"/>'s transaction. For a complete
    /// CRL, call it before the transaction writes anything: a large one is read in parallel on connections of its own
    /// (<see cref="RevokedCertificates.ReadPartsAsync"/>), which see what is committed. A delta CRL reads on the
    /// transaction's connection (the publisher signs it after the complete CRL it updates, in one transaction).</summary>
    /// <param name="delta">Sign a delta CRL (RFC 5280 §5.2.4) against the latest complete CRL instead of a complete one:
    /// what was revoked, put on hold or had its reason changed since that CRL, and removeFromCRL for what left it
    /// (released from hold, or expired).</param>
    /// <param name="knownComplete">For a delta: the complete CRL the caller holds in memory. Used when it is the latest
    /// (compared by number), so the base's bytes (46 MB at a million entries) are not read from the database again.</param>
    public async Task<CrlRecord> SignAsync(CertPortalDbContext db, string authority, DateTimeOffset now, string actor, CancellationToken ct,
        bool delta = false, (long Number, byte[] Der)? knownComplete = null)
    {
        var signer = ca[authority];
        // Held until the caller's transaction ends: the next signer reads this one's number and thisUpdate.
        await db.LockNamedAsync("crl:" + authority, ct);
        // Complete and delta CRLs share the numbers; thisUpdate increases per URL (each is revalidated on its own).
        var lastNumber = await db.Crls.Where(c => c.Authority == authority).MaxAsync(c => (long?)c.Number, ct) ?? 0;
        var previous = await Latest(db, authority, delta).Select(c => (DateTimeOffset?)c.ThisUpdate).FirstOrDefaultAsync(ct);
        // PostgreSQL: another node may have signed in this second after the caller's wait. Waiting here holds only
        // this CA's advisory lock (SQLite has one node, and its transaction would block every writer). Then the time
        // is read again, waited or not: the caller's may be from before the previous CRL's second ended (it read the
        // clock, then the lock and the read above took until the next second), and would repeat its thisUpdate.
        if (previous is not null && db.HasConcurrentWriters())
        {
            await WaitForSecondAfterAsync(previous.Value, ct);
            var later = time.GetUtcNow();
            if (later > now) now = later;
        }
        var thisUpdate = WholeSeconds(now);
        // Only a node whose clock lags the previous signer's takes the previous time: order over freshness.
        if (previous is not null && thisUpdate < WholeSeconds(previous.Value))
            thisUpdate = WholeSeconds(previous.Value);
        var number = lastNumber + 1;

        long? deltaOf = null;
        byte[]? baseDer = null;
        var baseEntries = 0;
        // A complete CRL's horizon is the previous complete CRL's thisUpdate; a delta's, its base's (what a complete CRL signed
        // now would list, so base + delta says the same).
        var horizon = ListingHorizon(delta ? null : previous, now);
        if (delta)
        {
            var based = await Latest(db, authority, delta: false).Select(c => new { c.Number, c.EntryCount, c.ThisUpdate }).FirstOrDefaultAsync(ct)
                ?? throw new InvalidOperationException("A delta CRL needs a complete CRL to update.");
            (deltaOf, baseEntries, horizon) = (based.Number, based.EntryCount, ListingHorizon(based.ThisUpdate, now));
            baseDer = knownComplete is { } known && known.Number == deltaOf
                ? known.Der
                : await Latest(db, authority, delta: false).Where(c => c.Number == deltaOf).Select(c => c.Der).FirstAsync(ct);
        }
        CrlEntries[] parts;
        // The root CA's CRL lists no subscriber certificates: its entries would be revoked issuing CAs.
        if (authority != CertificateAuthority.IssuingName)
        {
            parts = [new CrlEntries()];
        }
        else if (baseDer is not null)
        {
            parts = [new CrlEntries()];
            // The changes since the base name their certificates unless a change of unknown scope is among them. Each named
            // one is a look-up by key, which costs some 30 times a row of the sequential read of every revoked row (against
            // 1,000,000 entries, CertPortal.Bench --delta-crl: 10,000 changes 0.19 s against 0.78 s; 100,000 changes 2.1 s
            // against 1.1 s, at load 20), so past a fiftieth of the rows the delta is made from every row too.
            var named = await db.CrlChanges.CountAsync(c => c.Authority == authority && c.SerialNumber != null, ct);
            if ((named > 1000 && named > (baseEntries + named) / 50) ||
                await db.CrlChanges.AnyAsync(c => c.Authority == authority && c.SerialNumber == null, ct))
                await DeltaEntriesAsync(db, horizon, baseDer, parts[0], thisUpdate, ct);
            else
                await ChangedEntriesAsync(db, authority, horizon, baseDer, parts[0], thisUpdate, ct);
        }
        else
        {
            // Buffers sized from the previous CRL, so they are not copied as they fill.
            var expected = await Latest(db, authority, delta: false).Select(c => c.EntryCount).FirstOrDefaultAsync(ct);
            var count = RevokedCertificates.Parts(db);
            parts = [.. Enumerable.Range(0, count).Select(_ => CrlEntries.ForAbout(expected / count))];
            await RevokedCertificates.ReadPartsAsync(db, horizon, count, part => parts[part].Add, ct);
        }
        var entryCount = parts.Sum(p => p.Count);
        var lifetime = authority == CertificateAuthority.RootName ? options.Crl.RootLifetime : options.Crl.Lifetime;
        var freshest = !delta && authority == CertificateAuthority.IssuingName && options.Crl.DeltasEnabled ? ca.Urls.IssuingDeltaCrl : null;
        var der = CrlEncoder.BuildFromParts(signer, number, thisUpdate, thisUpdate + lifetime, parts, deltaOf, freshest);
        var record = new CrlRecord
        {
            Authority = authority, Number = number, DeltaOf = deltaOf, ThisUpdate = thisUpdate, NextUpdate = thisUpdate + lifetime,
            EntryCount = entryCount, Der = der,
        };
        await db.Crls.Where(c => c.Authority == authority && c.Number < number && (c.DeltaOf != null) == delta).ExecuteDeleteAsync(ct);
        db.Crls.Add(record);
        AuditLog.Record(db, now, actor, AuditActions.CrlSigned, $"crl:{authority}:{record.Number}",
            new { entries = entryCount, record.NextUpdate, deltaOf });
        foreach (var o in observers) o.OnCrlSigned(db, record, now);
        return record;
    }

    /// <summary>RFC 5280 §5.2.4, from the certificates the <see cref="CrlChange"/> rows since the base name (each was committed
    /// with its certificate's new state, and the base CRL's publisher deleted only the rows it had read before the
    /// certificates): each one revoked now is listed unless the base lists it with the same reason and date, and each one that left
    /// the base (released from hold, or expired as well as changed) gets removeFromCRL (§5.3.1). What it costs follows the
    /// changes, plus one pass over the base's bytes in memory; no revoked row is read but the changed ones. A certificate
    /// that merely expired since the base stays listed until the next complete CRL: removeFromCRL "may" say so (§5.3.1),
    /// and an expired certificate fails validation whatever a CRL says.</summary>
    internal static async Task ChangedEntriesAsync(CertPortalDbContext db, string authority, DateTimeOffset horizon, byte[] baseDer,
        CrlEntries delta, DateTimeOffset thisUpdate, CancellationToken ct)
    {
        var changed = (await db.CrlChanges.Where(c => c.Authority == authority && c.SerialNumber != null).Select(c => c.SerialNumber!)
            .ToListAsync(ct)).ToHashSet(StringComparer.Ordinal);
        // By the certificates' key, a list at a time: PostgreSQL planned the join with the change rows (a table that fills
        // in a mass revocation and empties at each complete CRL) as a scan of every certificate once its statistics were
        // from a fuller table; with the serials as an array it takes the primary key's index. One parameter for the list
        // (EF.Parameter: an array on PostgreSQL, json_each on SQLite), not one per serial: SQLite finds a parameter by its
        // name in a list, so thousands of them cost time with the square of their number.
        var states = new List<(string SerialNumber, DateTimeOffset? RevokedAt, RevocationReason? RevocationReason, DateTimeOffset NotAfter)>(changed.Count);
        foreach (var chunk in changed.Chunk(10_000))
            states.AddRange((await db.Certificates.AsNoTracking().Where(c => EF.Parameter(chunk).Contains(c.SerialNumber))
                .Select(c => new { c.SerialNumber, c.RevokedAt, c.RevocationReason, c.NotAfter }).ToListAsync(ct))
                .Select(c => (c.SerialNumber, c.RevokedAt, c.RevocationReason, c.NotAfter)));
        if (states.Count == 0) return;
        // Ordinal order of the upper-case hexadecimal, as the complete CRL's entries (ORDER BY "SerialNumber").
        states.Sort((x, y) => string.CompareOrdinal(x.SerialNumber, y.SerialNumber));
        var serials = states.Select(c => Convert.FromHexString(c.SerialNumber)).ToArray();
        var index = states.Select((c, i) => (c.SerialNumber, i)).ToDictionary(c => c.SerialNumber, c => c.i, StringComparer.OrdinalIgnoreCase);
        // A base entry is looked up only when its last bytes (a serial's random part) are those of a changed serial: a million
        // entries pass through a set of numbers, and only the few that match are made into text for the exact look-up.
        var tails = serials.Select(Tail).ToHashSet();
        var inBase = new bool[serials.Length];
        var baseReason = new X509RevocationReason?[serials.Length];
        var baseSameTime = new bool[serials.Length];
        CrlEncoder.FindEntries(baseDer, serial => tails.Contains(Tail(serial)), (serial, revocationDate, reason) =>
        {
            if (!index.TryGetValue(Convert.ToHexString(serial), out var i)) return;
            inBase[i] = true;
            baseReason[i] = reason;
            baseSameTime[i] = states[i].RevokedAt is { } revokedAt && CrlEncoder.IsTime(revocationDate, revokedAt);
        });
        for (var i = 0; i < states.Count; i++)
        {
            var state = states[i];
            if (state.RevokedAt is { } revokedAt && state.NotAfter >= horizon)
            {
                var reason = state.RevocationReason is { } r ? RevokedCertificates.EntryReason(r) : null;
                // The date too: a hold released and placed again since the base has the base's reason and a later date.
                if (!inBase[i] || baseReason[i] != reason || !baseSameTime[i]) delta.Add(serials[i], revokedAt, reason);
            }
            else if (inBase[i])
            {
                delta.Add(serials[i], thisUpdate, X509RevocationReason.RemoveFromCrl);
            }
        }
    }

    private static ulong Tail(byte[] serial) => Tail(serial.AsSpan());

    private static ulong Tail(ReadOnlySpan<byte> serial)
    {
        if (serial.Length >= sizeof(ulong)) return System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(serial[^sizeof(ulong)..]);
        var tail = 0UL;
        foreach (var b in serial) tail = (tail << 8) | b;
        return tail;
    }

    /// <summary>RFC 5280 §5.2.4, from every revoked row, for changes of unknown scope (see <see cref="CrlChange.SerialNumber"/>):
    /// the delta lists every entry that is new or has another reason or revocationDate than in the base CRL (a hold released and
    /// placed again: base and delta must give the entry a complete CRL signed now has), and removeFromCRL (§5.3.1) for
    /// every base entry that is gone: released from hold, or expired. Both lists are in serial order (the base was written
    /// from the same query), so one pass merges them.</summary>
    internal static async Task DeltaEntriesAsync(CertPortalDbContext db, DateTimeOffset horizon, byte[] baseDer, CrlEntries delta,
        DateTimeOffset thisUpdate, CancellationToken ct)
    {
        using var based = CrlEncoder.ReadEntries(baseDer).GetEnumerator();
        var more = based.MoveNext();
        var previous = new byte[64];
        var previousLength = -1;
        await RevokedCertificates.ReadAsync(db, horizon, (serial, revokedAt, reason) =>
        {
            // The merge needs the database's order to be the bytes' order. Serials are upper-case hexadecimal of one length,
            // which every collation sorts alike; a database that does not would otherwise make a wrong delta.
            if (previousLength >= 0 && serial.SequenceCompareTo(previous.AsSpan(0, previousLength)) <= 0)
                throw new InvalidOperationException("The database returned serial numbers out of order; a delta CRL cannot be computed.");
            serial.CopyTo(previous);
            previousLength = serial.Length;
            while (more && based.Current.SerialNumber.Span.SequenceCompareTo(serial) < 0)
            {
                delta.Add(based.Current.SerialNumber.Span, thisUpdate, X509RevocationReason.RemoveFromCrl);
                more = based.MoveNext();
            }
            if (more && based.Current.SerialNumber.Span.SequenceEqual(serial))
            {
                if (based.Current.Reason != reason || !CrlEncoder.IsTime(based.Current.RevocationDate.Span, revokedAt)) delta.Add(serial, revokedAt, reason);
                more = based.MoveNext();
            }
            else
            {
                delta.Add(serial, revokedAt, reason);
            }
        }, ct);
        for (; more; more = based.MoveNext()) delta.Add(based.Current.SerialNumber.Span, thisUpdate, X509RevocationReason.RemoveFromCrl);
    }

    /// <summary>Certificates that expired before this are no longer listed. RFC 5280 §3.3: an entry "MUST NOT be removed from the
    /// CRL until it appears on one regularly scheduled CRL issued beyond the revoked certificate's validity period" (a signature
    /// checked later as of a time before the expiry still needs it). With the previous complete CRL's thisUpdate as the horizon a
    /// certificate that expired at E is listed by every CRL whose predecessor was signed at or before E, that is up to and
    /// including the first CRL signed after E, however long the service was down in between. Never later than now (a previous
    /// CRL dated ahead of a clock that went back).</summary>
    internal static DateTimeOffset ListingHorizon(DateTimeOffset? previousComplete, DateTimeOffset now) =>
        previousComplete is { } previous && previous < now ? previous : now;

    /// <summary>Waits until the clock is past the second of the latest CRL of this kind of <paramref name="authority"/>.</summary>
    public static async Task WaitForNextSecondAsync(CertPortalDbContext db, string authority, bool delta, TimeProvider time, CancellationToken ct)
    {
        var latest = await Latest(db, authority, delta).Select(c => (DateTimeOffset?)c.ThisUpdate).FirstOrDefaultAsync(ct);
        if (latest is not null) await WaitForSecondAfterAsync(time, latest.Value, ct);
    }

    private Task<bool> WaitForSecondAfterAsync(DateTimeOffset previous, CancellationToken ct) => WaitForSecondAfterAsync(time, previous, ct);

    /// <summary>True when it waited. At most about a second of real time: a clock that does not move (a test's fake
    /// clock) or lags the previous signer's gives up, and the CRL then shares the previous one's thisUpdate rather
    /// than being dated in the future; the ETag (CRL number) still tells them apart.</summary>
    internal static async Task<bool> WaitForSecondAfterAsync(TimeProvider time, DateTimeOffset previous, CancellationToken ct)
    {
        var next = WholeSeconds(previous).AddSeconds(1);
        var waited = false;
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        while (System.Diagnostics.Stopwatch.GetElapsedTime(started) < TimeSpan.FromSeconds(1.2))
        {
            var left = next - time.GetUtcNow();
            if (left <= TimeSpan.Zero) break;
            // Real time on purpose (not TimeProvider.Delay): a fake clock would never fire it. Timers count whole
            // milliseconds on a coarse clock and may fire a little before the wall clock's moment: round up and check
            // again (a truncated Task.Delay(0) ended the old counted loop in the last millisecond of the second).
            await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(100, Math.Ceiling(left.TotalMilliseconds) + 1)), ct);
            waited = true;
        }
        return waited;
    }

    /// <summary>The latest complete CRL.</summary>
    public static Task<CrlRecord?> LatestAsync(CertPortalDbContext db, string authority, CancellationToken ct) =>
        Latest(db, authority, delta: false).FirstOrDefaultAsync(ct);

    /// <summary>The latest complete CRL's number, times and entry count, without its bytes (tens of megabytes at a
    /// million entries) for pages that show its status.</summary>
    public static Task<CrlRecord?> LatestWithoutBytesAsync(CertPortalDbContext db, string authority, CancellationToken ct) =>
        Latest(db, authority, delta: false).Select(c => new CrlRecord
        {
            Authority = c.Authority, Number = c.Number, DeltaOf = c.DeltaOf, ThisUpdate = c.ThisUpdate, NextUpdate = c.NextUpdate, EntryCount = c.EntryCount,
        }).FirstOrDefaultAsync(ct);

    /// <summary>The latest delta CRL, or null when there is none (delta CRLs off, or none signed yet).</summary>
    public static Task<CrlRecord?> LatestDeltaAsync(CertPortalDbContext db, string authority, CancellationToken ct) =>
        Latest(db, authority, delta: true).FirstOrDefaultAsync(ct);

    internal static IQueryable<CrlRecord> Latest(CertPortalDbContext db, string authority, bool delta) =>
        db.Crls.AsNoTracking().Where(c => c.Authority == authority && (c.DeltaOf != null) == delta).OrderByDescending(c => c.Number);

    internal static DateTimeOffset WholeSeconds(DateTimeOffset t) =>
        new(t.UtcTicks - t.UtcTicks % TimeSpan.TicksPerSecond, TimeSpan.Zero);
}
