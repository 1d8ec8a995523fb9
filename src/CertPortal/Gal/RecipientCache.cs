using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Text.Json;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Revocation;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace CertPortal.Gal;

/// <summary>The recipient look-up's answers, in memory: a mail gateway asks for every recipient of every message,
/// and the database need not answer the same question thousands of times a second. Per mailbox it keeps the
/// certificates not revoked and not expired, and the JSON answer per usage.
/// <para>Kept correct on every node: issuance, revocation, hold and release write a <see cref="CertificateChange"/>
/// row in their own transaction; each node reads the new rows every <c>Lookup:PollInterval</c> and drops those
/// mailboxes (the node that made the change drops them as soon as it commits). On SQLite, one node per database,
/// no row is written: the node's own drop at commit is all there is to do. Expiry needs no signal: an entry is
/// reloaded at the first notBefore/notAfter among its certificates, and in every case after <c>Lookup:MaxStaleness</c>.
/// A load that overlapped an invalidation is answered but not kept, so a stale read never stays in the cache.</para></summary>
public sealed class RecipientCache(IServiceScopeFactory scopes, CertPortalOptions options, TimeProvider time, ILogger<RecipientCache> logger)
    : BackgroundService
{
    /// <summary>On PostgreSQL a transaction can commit a lower change id after a higher one was read: ids skipped over (gaps) are
    /// looked for again until every transaction that could still commit them has ended, which the database's snapshots tell
    /// (<see cref="Gap"/>). A fixed wait (10 s, before) lost the change of a transaction that committed later than that (a long
    /// key block, a stalled node), and the OCSP responder, which has no MaxStaleness, then said "good" for a revoked
    /// certificate until its response's refresh (a day). A gap is first left this long, so that a transaction that took its id
    /// just before the poll has been given its transaction id too (nextval comes a moment before the row's insert).</summary>
    private static readonly TimeSpan GapSettle = TimeSpan.FromSeconds(1);
    /// <summary>Where the database cannot say (SQLite, which has no concurrent writers and writes no change rows), and for a
    /// gap whose transactions never seem to end: the change log keeps rows for <see cref="ChangeRetention"/> anyway.</summary>
    private static readonly TimeSpan GapTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan GapLimit = TimeSpan.FromMinutes(50);
    /// <summary>Ids skipped over in one poll beyond which they are not tracked one by one (a burst of that many changes
    /// between two polls); the caches' MaxStaleness and the OCSP refresh are then the bound, as before.</summary>
    private const int MaxTrackedGaps = 100_000;

    /// <summary>An id not seen yet: since when, and the first transaction not yet started when it settled (0 until then). It
    /// can be given up once the oldest transaction still running is at or past that: every transaction that could have held it
    /// has committed (its row was then read) or rolled back.</summary>
    private record struct Gap(DateTimeOffset Since, long Xmax);
    private static readonly TimeSpan ChangeRetention = TimeSpan.FromHours(1);
    private const int MaxRenderedVariants = 8;

    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    // Reads in flight by mailbox, with the epoch they began in: misses for one mailbox at once (a gateway's burst for a
    // recipient whose entry a change has just dropped) share one database read instead of one each.
    private readonly ConcurrentDictionary<string, (long Epoch, Task<Entry> Load)> _loading = new(StringComparer.Ordinal);
    private readonly ConditionalWeakTable<DbContext, List<CertificateChange>> _pending = [];
    // Change ids this node committed and so already dropped at commit: the poll that reads them again skips them, or
    // every local change would drop its mailbox twice and make a look-up in between read the database again.
    private readonly ConcurrentDictionary<long, byte> _own = new();
    private readonly Lock _gate = new();
    private readonly Dictionary<long, Gap> _gaps = [];
    // 0 until the first poll has found where the change log stands: until then nothing is kept.
    private long _epoch;
    private long _watermark;
    private long _loads;
    // Under _gate: the bytes of the entries in _entries (Entry.Size), bounded by Lookup:MaxCacheBytes.
    private long _bytes;
    private DateTimeOffset _lastPrune = DateTimeOffset.MinValue;
    // How often expired entries are dropped (DropExpired: one pass over the entries).
    private static readonly TimeSpan SweepInterval = TimeSpan.FromSeconds(1);
    private DateTimeOffset _lastSweep = DateTimeOffset.MinValue;

    /// <summary>Database reads made for look-ups (cache misses).</summary>
    public long Loads => Interlocked.Read(ref _loads);
    public int Count => _entries.Count;
    /// <summary>True once the change log is being followed; until then every look-up reads the database.</summary>
    public bool Watching => Volatile.Read(ref _epoch) != 0;

    /// <summary>Counts the invalidations since the change log is followed (0 before): reads that began in an earlier one
    /// may predate a change.</summary>
    internal long Epoch => Volatile.Read(ref _epoch);

    /// <summary>Bytes the cache holds now, as counted against <c>Lookup:MaxCacheBytes</c>.</summary>
    public long CachedBytes { get { lock (_gate) return _bytes; } }

    /// <summary>The entries' sizes summed afresh: equal to <see cref="CachedBytes"/> unless the running count drifted.</summary>
    internal long RecountBytes() { lock (_gate) return _entries.Values.Sum(e => e.Size); }

    /// <summary>A certificate as the answers need it: its DER (PEM is made when an answer is rendered, at twice the
    /// size as a UTF-16 string).</summary>
    private sealed record Cert(string SerialNumber, CertificateProfileName Profile, DateTimeOffset NotBefore, DateTimeOffset NotAfter, byte[] Der);

    /// <summary>What an entry costs besides its byte arrays: the objects, the dictionary node, the key and serial
    /// strings (measured with a heap dump: 300-400 bytes for a mailbox with one certificate).</summary>
    private const int EntryOverhead = 256;
    private const int CertOverhead = 160;
    private const int VariantOverhead = 64;

    private sealed class Entry(string key, IReadOnlyList<Cert> certificates, DateTimeOffset validUntil)
    {
        public IReadOnlyList<Cert> Certificates { get; } = certificates;
        public DateTimeOffset ValidUntil { get; } = validUntil;
        /// <summary>JSON answers by mailbox as asked and usage (bytes null: no valid certificate, 404); replaced, never
        /// changed, under the cache's lock. A few at most: an array is smaller than a dictionary per mailbox.</summary>
        public (string Mailbox, CertificateUsage? Usage, byte[]? Bytes)[] Rendered { get; set; } = [];
        /// <summary>Counted against the cache's bound: the arrays, the strings and the objects around them.</summary>
        public long Size { get; set; } = EntryOverhead + 2L * key.Length + certificates.Sum(c => CertOverhead + 2L * c.SerialNumber.Length + c.Der.Length);

        public bool TryGet(string mailbox, CertificateUsage? usage, out byte[]? bytes)
        {
            foreach (var r in Rendered)
                if (r.Usage == usage && string.Equals(r.Mailbox, mailbox, StringComparison.Ordinal))
                {
                    bytes = r.Bytes;
                    return true;
                }
            bytes = null;
            return false;
        }
    }

    /// <summary>The JSON answer for a normalised mailbox and usage; null when it has no valid certificate for it.</summary>
    public async ValueTask<byte[]?> LookupAsync(string mailbox, CertificateUsage? usage, CancellationToken ct)
    {
        var key = mailbox.ToLowerInvariant();
        var now = time.GetUtcNow();
        if (!_entries.TryGetValue(key, out var entry) || entry.ValidUntil <= now)
            entry = await SharedLoadAsync(key, now, ct);
        if (entry.TryGet(mailbox, usage, out var bytes)) return bytes;
        bytes = Render(entry, mailbox, usage, now);
        lock (_gate)
        {
            // Kept only while the entry is the cache's (not dropped or replaced meanwhile), so every byte counted is
            // one the cache holds. A few spellings per mailbox at most: varying the case of an address must not grow
            // memory without bound.
            if (entry.Rendered.Length < MaxRenderedVariants && _entries.TryGetValue(key, out var kept) && ReferenceEquals(kept, entry) &&
                !entry.TryGet(mailbox, usage, out _))
            {
                entry.Rendered = [.. entry.Rendered, (mailbox, usage, bytes)];
                var size = VariantOverhead + 2L * mailbox.Length + (bytes?.Length ?? 0);
                entry.Size += size;
                _bytes += size;
                if (_bytes > options.Lookup.MaxCacheBytes) EvictSome();
            }
        }
        return bytes;
    }

    /// <summary>The answer from memory when <paramref name="asked"/> is a mailbox exactly as an earlier look-up normalised
    /// it, as clients send it: a normalised mailbox normalises to itself, so the validation and IDNA conversion of
    /// <see cref="Mailbox.TryNormalize"/> can be skipped. False for anything else and for an answer of "none" (the caller
    /// then takes the full path, which words the 404).</summary>
    public bool TryAnswerAsAsked(string asked, CertificateUsage? usage, [NotNullWhen(true)] out byte[]? bytes)
    {
        bytes = null;
        return _entries.TryGetValue(asked, out var entry) && entry.ValidUntil > time.GetUtcNow() && entry.TryGet(asked, usage, out bytes) &&
            bytes is not null;
    }

    /// <summary>Called inside the transaction of a change: the row every node reads (none on SQLite), and a note to drop the mailbox
    /// here once the transaction has committed.</summary>
    internal void RecordChange(CertPortalDbContext db, string email, DateTimeOffset now)
    {
        var change = new CertificateChange { Email = email.ToLowerInvariant(), At = now };
        if (db.SharedByNodes) db.CertificateChanges.Add(change);
        lock (_pending) _pending.GetOrCreateValue(db).Add(change);
    }

    /// <summary><see cref="RecordChange"/> written with a plain command (the hot paths' way; in the group writer on PostgreSQL it
    /// travels with the next batch, and its id is known before the commit).</summary>
    internal async Task RecordChangeNowAsync(CertPortalDbContext db, string email, DateTimeOffset now, CancellationToken ct)
    {
        var change = new CertificateChange { Email = email.ToLowerInvariant(), At = now };
        if (db.SharedByNodes) await DirectSql.InsertCertificateChangeAsync(db, change, ct);
        lock (_pending) _pending.GetOrCreateValue(db).Add(change);
    }

    internal void Committed(DbContext db)
    {
        List<CertificateChange>? changes;
        lock (_pending)
        {
            if (!_pending.TryGetValue(db, out changes)) return;
            _pending.Remove(db);
        }
        foreach (var c in changes) if (c.Id > 0) _own.TryAdd(c.Id, 0);
        Invalidate(changes.Select(c => c.Email).ToHashSet(StringComparer.Ordinal));
    }

    internal void RolledBack(DbContext db)
    {
        lock (_pending) _pending.Remove(db);
    }

    /// <summary>The mailboxes whose certificates changed: on this node when the change commits, for other nodes' changes
    /// at the poll that reads them. The OCSP responder drops its signed answers for them too.</summary>
    public event Action<IReadOnlyCollection<string>>? MailboxesChanged;

    private void Invalidate(IReadOnlyCollection<string> keys)
    {
        lock (_gate)
        {
            if (_epoch != 0) _epoch++;
            foreach (var k in keys)
                if (_entries.TryRemove(k, out var dropped)) _bytes -= dropped.Size;
        }
        MailboxesChanged?.Invoke(keys);
    }

    /// <summary>Joins a read of the same mailbox that began in the current epoch, else starts one. A read that began
    /// before an invalidation is never joined: it may predate the change, and this node answers its own changes at once.
    /// Until the change log is followed (epoch 0) nothing is shared, as nothing is kept.</summary>
    private async Task<Entry> SharedLoadAsync(string key, DateTimeOffset now, CancellationToken ct)
    {
        var epoch = Volatile.Read(ref _epoch);
        if (epoch == 0) return await LoadAsync(key, now, ct);
        if (_loading.TryGetValue(key, out var running) && running.Epoch == epoch) return await running.Load.WaitAsync(ct);
        // Not cancelled by this caller's token: others may be waiting for it (the read is bounded by the command timeout).
        (long Epoch, Task<Entry> Load) mine = (epoch, LoadAsync(key, now, CancellationToken.None));
        _loading[key] = mine;
        try
        {
            return await mine.Load.WaitAsync(ct);
        }
        finally
        {
            _loading.TryRemove(new KeyValuePair<string, (long, Task<Entry>)>(key, mine));
        }
    }

    /// <summary>What a cache miss reads: the mailbox's certificates not revoked and not expired, through the index on
    /// lower("Email") (<see cref="CertificateQueries.OfMailbox"/>), not a scan of every certificate.</summary>
    internal static IQueryable<IssuedCertificate> ValidOf(CertPortalDbContext db, string key, DateTimeOffset now) =>
        db.Certificates.AsNoTracking().OfMailbox(key).Where(c => c.RevokedAt == null && c.NotAfter > now);

    private async Task<Entry> LoadAsync(string key, DateTimeOffset now, CancellationToken ct)
    {
        var epoch = Volatile.Read(ref _epoch);
        Interlocked.Increment(ref _loads);
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var rows = await ValidOf(db, key, now)
            .Select(c => new { c.SerialNumber, c.Profile, c.NotBefore, c.NotAfter, c.IssuedAt, c.Der })
            .ToListAsync(ct);
        var certs = rows.OrderByDescending(c => c.NotBefore).ThenByDescending(c => c.IssuedAt)
            .Select(c => new Cert(c.SerialNumber, c.Profile, c.NotBefore, c.NotAfter, c.Der)).ToList();
        // Valid until the answer would change by time alone: a certificate expires or becomes valid.
        var validUntil = now + options.Lookup.MaxStaleness;
        foreach (var c in certs)
        {
            if (c.NotAfter < validUntil) validUntil = c.NotAfter;
            if (c.NotBefore > now && c.NotBefore < validUntil) validUntil = c.NotBefore;
        }
        var entry = new Entry(key, certs, validUntil);
        if (options.Lookup.MaxMailboxes > 0 && options.Lookup.MaxCacheBytes > 0)
        {
            lock (_gate)
            {
                // An invalidation while we read means our rows may predate the change: answer, but do not keep.
                if (epoch != 0 && epoch == _epoch)
                {
                    if (_entries.TryGetValue(key, out var replaced)) _bytes -= replaced.Size;
                    _entries[key] = entry;
                    _bytes += entry.Size;
                    if (_entries.Count > options.Lookup.MaxMailboxes || _bytes > options.Lookup.MaxCacheBytes) EvictSome();
                }
            }
        }
        return entry;
    }

    /// <summary>Under _gate, when a bound is passed: drops entries (whichever the dictionary yields first) until a tenth
    /// of each bound is free again. Cheap, and a dropped entry costs one database read when it is next asked for.</summary>
    private void EvictSome()
    {
        var keepCount = options.Lookup.MaxMailboxes - Math.Max(1, options.Lookup.MaxMailboxes / 10);
        var keepBytes = options.Lookup.MaxCacheBytes - options.Lookup.MaxCacheBytes / 10;
        foreach (var (k, entry) in _entries)
        {
            if (_entries.Count <= keepCount && _bytes <= keepBytes) break;
            if (_entries.TryRemove(k, out _)) _bytes -= entry.Size;
        }
    }

    private static byte[]? Render(Entry entry, string mailbox, CertificateUsage? usage, DateTimeOffset now)
    {
        var profiles = usage is { } u ? CertificateProfile.Serving(u) : Enum.GetValues<CertificateProfileName>();
        var valid = entry.Certificates.Where(c => c.NotBefore <= now && c.NotAfter > now && profiles.Contains(c.Profile)).ToList();
        if (valid.Count == 0) return null;
        return JsonSerializer.SerializeToUtf8Bytes(new RecipientCertificates(mailbox, valid.Select(c => new RecipientCertificate(c.SerialNumber,
            usage is { } x ? Names.Of(x) : (c.Profile == CertificateProfileName.Dual ? "signing,encryption" : Names.Of(c.Profile)),
            Names.Of(c.Profile), c.NotBefore, c.NotAfter, Pem.Certificate(c.Der))).ToList()), JsonSerializerOptions.Web);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Polled even with the look-up cache off (MaxMailboxes 0): MailboxesChanged keeps the OCSP responder current.
        using var timer = PollTimer.Create(options.Lookup.PollInterval);
        try
        {
            do
            {
                try
                {
                    await PollAsync(stoppingToken);
                }
                catch (Exception e) when (PollTimer.FailedPass(e, stoppingToken))
                {
                    // Entries still expire after MaxStaleness; the next tick tries again.
                    logger.LogWarning(e, "Reading certificate changes for the look-up cache failed");
                }
                var now = time.GetUtcNow();
                if (now - _lastSweep >= SweepInterval)
                {
                    _lastSweep = now;
                    DropExpired(now);
                }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopped: ends quietly, as PollTimer.RunAsync explains.
        }
    }

    /// <summary>Drops the entries whose validity has passed. Such an entry is never answered from again (the next
    /// look-up reads the database), so keeping it until the bound evicts it only held memory: with it gone the cache
    /// holds the mailboxes asked for within <c>Lookup:MaxStaleness</c> (30 s by default), not every mailbox ever asked
    /// for up to <c>Lookup:MaxCacheBytes</c>.</summary>
    internal void DropExpired(DateTimeOffset now)
    {
        List<KeyValuePair<string, Entry>>? expired = null;
        foreach (var pair in _entries)
            if (pair.Value.ValidUntil <= now) (expired ??= []).Add(pair);
        if (expired is null) return;
        lock (_gate)
        {
            // Only the entry seen expired: one a load has put in its place since stays.
            foreach (var pair in expired)
                if (_entries.TryRemove(pair)) _bytes -= pair.Value.Size;
        }
    }

    /// <summary>Reads the changes every node made since the last poll and drops those mailboxes.</summary>
    private async Task PollAsync(CancellationToken ct)
    {
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var now = DateTimeOffset.UtcNow;
        // One snapshot for the rows and for which transactions were running when they were read.
        await using var snapshot = db.HasConcurrentWriters() ? await db.Database.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, ct) : null;
        var running = await db.RunningTransactionsAsync(ct);
        if (Volatile.Read(ref _epoch) == 0)
        {
            var max = await db.CertificateChanges.MaxAsync(c => (long?)c.Id, ct) ?? 0;
            // Changes still being committed at the first poll have ids below the highest committed one: look for them as for
            // any gap (the last thousand ids; a node starting in a burst of more than that relies on MaxStaleness).
            var seen = (await db.CertificateChanges.AsNoTracking().Where(c => c.Id > max - 1000).Select(c => c.Id).ToListAsync(ct)).ToHashSet();
            lock (_gate)
            {
                if (running is not null)
                    for (var id = Math.Max(1, max - 999); id < max; id++)
                        if (!seen.Contains(id)) _gaps[id] = new Gap(now, 0);
                _watermark = max;
                _epoch = 1;
            }
            return;
        }

        var changed = new HashSet<string>(StringComparer.Ordinal);
        // The gaps by their ids, apart from the new rows: read as one range from the oldest gap, a gap held open by a long
        // transaction made every poll re-read the rows after it, and past 10,000 of them the poll no longer reached new ones.
        if (_gaps.Count > 0)
        {
            var gapIds = _gaps.Keys.ToArray();
            foreach (var row in await db.CertificateChanges.AsNoTracking().Where(c => EF.Parameter(gapIds).Contains(c.Id))
                         .Select(c => new { c.Id, c.Email }).ToListAsync(ct))
                if (_gaps.Remove(row.Id) && !_own.TryRemove(row.Id, out _)) changed.Add(row.Email);
        }
        var watermark = _watermark;
        var rows = await db.CertificateChanges.AsNoTracking().Where(c => c.Id > watermark).OrderBy(c => c.Id)
            .Select(c => new { c.Id, c.Email }).Take(10_000).ToListAsync(ct);
        foreach (var row in rows)
        {
            // Ids skipped over may still commit (PostgreSQL assigns them before commit): look for them again.
            if (row.Id - _watermark <= (running is null ? 1000 : MaxTrackedGaps))
                for (var missing = _watermark + 1; missing < row.Id; missing++) _gaps[missing] = new Gap(now, 0);
            _watermark = row.Id;
            if (!_own.TryRemove(row.Id, out _)) changed.Add(row.Email);
        }
        // Own ids the poll has passed (read before this node's commit registered them, or pruned) are of no more use.
        foreach (var id in _own.Keys)
            if (id <= _watermark && !_gaps.ContainsKey(id)) _own.TryRemove(id, out _);
        foreach (var (id, gap) in _gaps.ToList())
        {
            if (running is not { } r)
            {
                if (now - gap.Since > GapTimeout) _gaps.Remove(id);
            }
            else if (gap.Xmax == 0)
            {
                if (now - gap.Since >= GapSettle) _gaps[id] = gap with { Xmax = r.FirstNotStarted };
            }
            else if (r.OldestRunning >= gap.Xmax || now - gap.Since > GapLimit)
            {
                _gaps.Remove(id);
            }
        }
        if (snapshot is not null) await snapshot.CommitAsync(ct);
        if (changed.Count > 0) Invalidate(changed);

        if (now - _lastPrune > TimeSpan.FromMinutes(1))
        {
            _lastPrune = now;
            var cutoff = time.GetUtcNow() - ChangeRetention;
            await db.CertificateChanges.Where(c => c.At < cutoff).ExecuteDeleteAsync(ct);
        }
    }
}

/// <summary>Writes the change rows in the transaction of every issuance and status change.</summary>
public sealed class RecipientCacheEvents(RecipientCache cache) : ICertificateEvents
{
    public void OnIssued(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now) => cache.RecordChange(db, certificate.Email, now);

    // Every enrollment writes this row: as a plain command, not through EF Core's SaveChanges (~5 % of an enrollment's CPU).
    public ValueTask OnIssuedAsync(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now, CancellationToken ct) =>
        new(cache.RecordChangeNowAsync(db, certificate.Email, now, ct));

    public void OnStatusChanged(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now) => cache.RecordChange(db, certificate.Email, now);

    public ValueTask OnStatusChangedAsync(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now, CancellationToken ct) =>
        new(cache.RecordChangeNowAsync(db, certificate.Email, now, ct));
}

/// <summary>Tells the cache when a transaction that recorded changes has committed (drop those mailboxes now, on
/// this node: a revocation is never served from this node's cache after its POST returned) or rolled back.</summary>
public sealed class RecipientCacheInvalidation(RecipientCache cache) : DbTransactionInterceptor, ISaveChangesInterceptor
{
    public override void TransactionCommitted(System.Data.Common.DbTransaction transaction, TransactionEndEventData eventData)
    {
        if (eventData.Context is { } db) cache.Committed(db);
    }

    public override Task TransactionCommittedAsync(System.Data.Common.DbTransaction transaction, TransactionEndEventData eventData,
        CancellationToken cancellationToken = default)
    {
        if (eventData.Context is { } db) cache.Committed(db);
        return Task.CompletedTask;
    }

    public override void TransactionRolledBack(System.Data.Common.DbTransaction transaction, TransactionEndEventData eventData)
    {
        if (eventData.Context is { } db) cache.RolledBack(db);
    }

    public override Task TransactionRolledBackAsync(System.Data.Common.DbTransaction transaction, TransactionEndEventData eventData,
        CancellationToken cancellationToken = default)
    {
        if (eventData.Context is { } db) cache.RolledBack(db);
        return Task.CompletedTask;
    }

    // SaveChanges without an explicit transaction commits its own.
    public int SavedChanges(SaveChangesCompletedEventData eventData, int result)
    {
        if (eventData.Context is { } db && db.Database.CurrentTransaction is null) cache.Committed(db);
        return result;
    }

    public ValueTask<int> SavedChangesAsync(SaveChangesCompletedEventData eventData, int result, CancellationToken cancellationToken = default)
    {
        if (eventData.Context is { } db && db.Database.CurrentTransaction is null) cache.Committed(db);
        return ValueTask.FromResult(result);
    }
}
