using System.Collections.Concurrent;
using System.Threading.Channels;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Revocation;

/// <summary>The latest CRL (complete or delta) of a CA as this node serves it: bytes and the validators of conditional requests.</summary>
public sealed record PublishedCrl(string Authority, long Number, DateTimeOffset ThisUpdate, DateTimeOffset NextUpdate, int EntryCount, byte[] Der,
    long? DeltaOf = null)
{
    /// <summary>Strong validator: a CA's CRL number names exactly one CRL.</summary>
    public string ETag => $"\"{Authority}-{Number}\"";

    /// <summary>The highest CRL number of <paramref name="authority"/> among the entity tags of an If-None-Match header
    /// (a list, RFC 9110 §13.1.2), or null when none is one of ours.</summary>
    public static long? NewestNumberIn(Microsoft.Extensions.Primitives.StringValues ifNoneMatch, string authority)
    {
        long? newest = null;
        if (!Microsoft.Net.Http.Headers.EntityTagHeaderValue.TryParseList(ifNoneMatch, out var tags)) return null;
        var prefix = authority + "-";
        foreach (var tag in tags)
        {
            var value = tag.Tag.AsSpan().Trim('"');
            if (!tag.IsWeak && value.StartsWith(prefix, StringComparison.Ordinal)
                && long.TryParse(value[prefix.Length..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n)
                && !(n <= newest))
                newest = n;
        }
        return newest;
    }
}

/// <summary>Signs CRLs off the revocation path: a revocation commits its row and a <see cref="CrlChange"/>, and returns;
/// this publisher then signs one CRL for all changes of the last <c>Crl:PublishDelay</c> (a burst of revocations makes
/// one CRL, not one each). It also re-signs each CRL after <c>Crl:RefreshAfter</c>, so relying parties never see one
/// past its nextUpdate (S/MIME BR 4.9.7), and keeps the latest CRLs in memory for the distribution points.
/// Every node runs one; the per-CA lock in <see cref="CrlSigner"/> makes exactly one of them sign each CRL, and the
/// others pick it up from the database within <c>Crl:CheckInterval</c>.</summary>
public sealed class CrlPublisher(IServiceScopeFactory scopes, CertPortalOptions options, TimeProvider time, ILogger<CrlPublisher> logger)
    : BackgroundService
{
    public const string Actor = "system:crl-publisher";
    private static readonly string[] Authorities = [CertificateAuthority.RootName, CertificateAuthority.IssuingName];

    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly SemaphoreSlim _pass = new(1, 1);
    private readonly ConcurrentDictionary<string, PublishedCrl> _served = new();

    /// <summary>A revocation, hold or release committed on this node: sign soon (after PublishDelay).</summary>
    public void ChangeCommitted() => _wake.Writer.TryWrite(true);

    /// <summary>The complete CRL (or, with <paramref name="delta"/>, the delta CRL) this node serves; null only before
    /// the first one exists, or for delta CRLs when they are off. <paramref name="newerSeen"/>: the number of a CRL of this
    /// CA the client already holds (from its conditional request); when it is newer than this node's, another node signed it
    /// within the last <c>Crl:CheckInterval</c>, and the database is asked now rather than answering with an older CRL.</summary>
    public async Task<PublishedCrl?> ServedAsync(string authority, CancellationToken ct, bool delta = false, long? newerSeen = null)
    {
        if (delta && !options.Crl.DeltasEnabled) return null;
        if (_served.TryGetValue(Key(authority, delta), out var crl) && !(newerSeen > crl.Number)) return crl;
        await using var scope = scopes.CreateAsyncScope();
        return await LoadAsync(scope.ServiceProvider.GetRequiredService<CertPortalDbContext>(), authority, delta, ct);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                using var tick = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                var woken = _wake.Reader.WaitToReadAsync(tick.Token).AsTask();
                var first = await Task.WhenAny(woken, Task.Delay(options.Crl.CheckInterval, time, tick.Token));
                await tick.CancelAsync();
                if (first == woken && _wake.Reader.TryRead(out _) && options.Crl.PublishDelay > TimeSpan.Zero)
                    await DelayServingLatestAsync(options.Crl.PublishDelay, stoppingToken);
                await PublishAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // Keep the publisher alive: the next round retries. The CRL still served stays valid until its nextUpdate.
                logger.LogError(e, "CRL publication failed");
                await Task.Delay(options.Crl.CheckInterval, time, stoppingToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
    }

    /// <summary>Waits out Crl:PublishDelay after a change on this node in steps of at most Crl:CheckInterval, loading between them
    /// the CRLs other nodes signed meanwhile. Slept in one piece, the node went on serving its previous CRL for the whole delay
    /// (3 s by default, up to an hour) after another node had signed the change into a newer one, where README promises
    /// CheckInterval.</summary>
    private async Task DelayServingLatestAsync(TimeSpan delay, CancellationToken ct)
    {
        var until = time.GetUtcNow() + delay;
        for (var left = delay; left > TimeSpan.Zero; left = until - time.GetUtcNow())
        {
            await Task.Delay(left < options.Crl.CheckInterval ? left : options.Crl.CheckInterval, time, ct);
            if (time.GetUtcNow() >= until) return;
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            foreach (var authority in Authorities)
            {
                await LoadAsync(db, authority, delta: false, ct);
                if (authority == CertificateAuthority.IssuingName && options.Crl.DeltasEnabled) await LoadAsync(db, authority, delta: true, ct);
            }
        }
    }

    /// <summary>Signs a CRL for every CA that owes one (changes pending, or due for refresh), then makes sure this node
    /// serves the latest CRLs of each CA, whoever signed them. Returns how many CRLs this call signed.</summary>
    public async Task<int> PublishAsync(CancellationToken ct)
    {
        await _pass.WaitAsync(ct);
        try
        {
            await using var scope = scopes.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            var signer = scope.ServiceProvider.GetRequiredService<CrlSigner>();
            var signed = 0;
            foreach (var authority in Authorities)
            {
                var deltas = authority == CertificateAuthority.IssuingName && options.Crl.DeltasEnabled;
                if (await DueAsync(db, authority, deltas, await db.CrlChanges.AnyAsync(c => c.Authority == authority && c.InDelta == null, ct), ct) is { } expected)
                {
                    // Before the transaction: on SQLite it holds the write lock, which enrollments need meanwhile.
                    await CrlSigner.WaitForNextSecondAsync(db, authority, expected == CrlKind.Delta, time, ct);
                    // A new complete CRL gets its delta in the same transaction (below), which must also come after the previous
                    // delta's second: one signed just before the complete CRL fell due can be in this second. (PostgreSQL's
                    // signer waits for it itself; SQLite's would hold the write lock meanwhile.)
                    if (expected == CrlKind.Complete && deltas) await CrlSigner.WaitForNextSecondAsync(db, authority, delta: true, time, ct);
                    await using var tx = await db.Database.BeginTransactionAsync(ct);
                    // The signer's lock is taken first thing in SignAsync; what is read after it is what the previous
                    // signer committed. Changes are read before the certificates: each was committed with its
                    // certificate's new state, so the CRL signed below shows every change deleted with it.
                    await db.LockNamedAsync("crl:" + authority, ct);
                    // Changes a delta CRL showed already stay until the next complete CRL (the deltas after it list them
                    // again, against the same base) but owe no CRL.
                    var changes = await db.CrlChanges.Where(c => c.Authority == authority).Select(c => new { c.Id, Owed = c.InDelta == null }).ToListAsync(ct);
                    var owed = changes.Where(c => c.Owed).Select(c => c.Id).ToList();
                    if (await DueAsync(db, authority, deltas, owed.Count > 0, ct) is { } kind)
                    {
                        // A delta's base from memory when this node serves the latest complete CRL: not 46 MB read per delta.
                        var known = _served.GetValueOrDefault(Key(authority, delta: false)) is { } served ? (served.Number, served.Der) : ((long, byte[])?)null;
                        var crls = new List<CrlRecord>
                        {
                            await signer.SignAsync(db, authority, time.GetUtcNow(), Actor, ct, delta: kind == CrlKind.Delta, knownComplete: known),
                        };
                        if (kind == CrlKind.Complete && changes.Count > 0)
                        {
                            var shown = changes.Select(c => c.Id).ToList();
                            await db.CrlChanges.Where(c => shown.Contains(c.Id)).ExecuteDeleteAsync(ct);
                        }
                        else if (owed.Count > 0)
                        {
                            var number = crls[0].Number;
                            await db.CrlChanges.Where(c => owed.Contains(c.Id)).ExecuteUpdateAsync(u => u.SetProperty(c => c.InDelta, number), ct);
                        }
                        await db.SaveChangesAsync(ct);
                        // A new complete CRL gets its (empty) delta at once: a delta naming an older base would be
                        // ignored by relying parties, and would expire unrenewed.
                        if (kind == CrlKind.Complete && deltas)
                        {
                            crls.Add(await signer.SignAsync(db, authority, time.GetUtcNow(), Actor, ct, delta: true, knownComplete: (crls[0].Number, crls[0].Der)));
                            await db.SaveChangesAsync(ct);
                        }
                        await tx.CommitAsync(ct);
                        db.ChangeTracker.Clear();
                        foreach (var crl in crls)
                        {
                            Serve(crl);
                            logger.LogInformation("Signed {Authority} {Kind} CRL number {Number} with {Entries} entries for {Changes} changes, next update {NextUpdate}",
                                authority, crl.IsDelta ? "delta" : "complete", crl.Number, crl.EntryCount, owed.Count, crl.NextUpdate);
                        }
                        signed += crls.Count;
                        continue;
                    }
                    await tx.RollbackAsync(ct);
                }
                await LoadAsync(db, authority, delta: false, ct);
                if (deltas) await LoadAsync(db, authority, delta: true, ct);
            }
            return signed;
        }
        finally
        {
            _pass.Release();
        }
    }

    private enum CrlKind { Complete, Delta }

    /// <summary>Which CRL <paramref name="authority"/> owes now, if any. With delta CRLs, changes go into a delta
    /// unless the complete CRL is older than Crl:DeltaBaseInterval; without changes a complete CRL is re-signed after
    /// RefreshAfter (each new one followed by its delta).</summary>
    private async Task<CrlKind?> DueAsync(CertPortalDbContext db, string authority, bool deltas, bool changes, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        // Number and time only: this runs every CheckInterval, and a complete CRL may be tens of megabytes.
        var complete = await CrlSigner.Latest(db, authority, delta: false).Select(c => new { c.Number, c.ThisUpdate }).FirstOrDefaultAsync(ct);
        var refreshAfter = authority == CertificateAuthority.RootName ? options.Crl.RootLifetime / 2 : options.Crl.RefreshAfter;
        if (complete is null || complete.ThisUpdate + refreshAfter <= now) return CrlKind.Complete;
        if (!deltas) return changes ? CrlKind.Complete : null;
        if (changes) return complete.ThisUpdate + options.Crl.DeltaBaseInterval <= now ? CrlKind.Complete : CrlKind.Delta;
        // Delta CRLs just turned on: the complete CRL has no delta yet.
        var deltaOf = await CrlSigner.Latest(db, authority, delta: true).Select(c => c.DeltaOf).FirstOrDefaultAsync(ct);
        return deltaOf == complete.Number ? null : CrlKind.Delta;
    }

    private static string Key(string authority, bool delta) => delta ? authority + "-delta" : authority;

    private void Serve(CrlRecord crl)
    {
        var published = new PublishedCrl(crl.Authority, crl.Number, crl.ThisUpdate, crl.NextUpdate, crl.EntryCount, crl.Der, crl.DeltaOf);
        _served.AddOrUpdate(Key(crl.Authority, crl.IsDelta), published, (_, old) => old.Number >= published.Number ? old : published);
    }

    /// <summary>The latest CRL in the database (which another node may have signed), from memory unless it is newer than
    /// the one this node serves: the number is read, the bytes only when they changed.</summary>
    public Task<PublishedCrl?> LatestAsync(CertPortalDbContext db, string authority, bool delta, CancellationToken ct) =>
        LoadAsync(db, authority, delta, ct);

    /// <summary>Reads the bytes only when the database has a newer CRL than the one served.</summary>
    private async Task<PublishedCrl?> LoadAsync(CertPortalDbContext db, string authority, bool delta, CancellationToken ct)
    {
        var current = _served.GetValueOrDefault(Key(authority, delta));
        var number = await db.Crls.Where(c => c.Authority == authority && (c.DeltaOf != null) == delta).MaxAsync(c => (long?)c.Number, ct);
        if (number is null) return null;
        if (current is not null && current.Number >= number) return current;
        var crl = await db.Crls.AsNoTracking().FirstOrDefaultAsync(c => c.Authority == authority && c.Number == number, ct);
        if (crl is null) return current; // replaced in between; the next round loads the newer one
        Serve(crl);
        return _served[Key(authority, delta)];
    }

    public override void Dispose()
    {
        _pass.Dispose();
        base.Dispose();
    }
}
