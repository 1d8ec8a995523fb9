using System.Diagnostics.Metrics;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Gal;

/// <summary>Records what the directory must learn inside the transaction of the change itself.</summary>
public sealed class DirectoryOutboxEvents(DirectoryOptions options) : ICertificateEvents
{
    public void OnIssued(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now)
    {
        if (!options.IsEnabled || !options.PublishPersonalData) return;
        DirectoryOutbox.Enqueue(db, DirectoryPublicationKinds.Person, certificate.Email, "issued", certificate.SerialNumber, now, now);
        // Expiry needs no poller: the row that removes the certificate is written now, due when it expires.
        DirectoryOutbox.Enqueue(db, DirectoryPublicationKinds.Person, certificate.Email, "expiry", certificate.SerialNumber, now,
            certificate.NotAfter.AddSeconds(1));
    }

    public void OnStatusChanged(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now)
    {
        if (!options.IsEnabled || !options.PublishPersonalData) return;
        DirectoryOutbox.Enqueue(db, DirectoryPublicationKinds.Person, certificate.Email,
            certificate.RevokedAt is null ? "released" : "revoked", certificate.SerialNumber, now, now);
    }

    // The hot paths (enrollment and revocation in the group writer): the same rows as plain commands. A tracked row made the
    // writer save through EF Core after each change, which on PostgreSQL cost two round trips of its own per change (the held-back
    // commands, then EF Core's insert) instead of travelling with the group's other writes.
    public async ValueTask OnIssuedAsync(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now, CancellationToken ct)
    {
        if (!options.IsEnabled || !options.PublishPersonalData) return;
        await DirectSql.InsertDirectoryPublicationAsync(db, Row(certificate.Email, "issued", certificate.SerialNumber, now, now), ct);
        await DirectSql.InsertDirectoryPublicationAsync(db, Row(certificate.Email, "expiry", certificate.SerialNumber, now, certificate.NotAfter.AddSeconds(1)), ct);
    }

    public async ValueTask OnStatusChangedAsync(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now, CancellationToken ct)
    {
        if (!options.IsEnabled || !options.PublishPersonalData) return;
        await DirectSql.InsertDirectoryPublicationAsync(db,
            Row(certificate.Email, certificate.RevokedAt is null ? "released" : "revoked", certificate.SerialNumber, now, now), ct);
    }

    private static DirectoryPublication Row(string email, string reason, string serial, DateTimeOffset now, DateTimeOffset due) => new()
    {
        Kind = DirectoryPublicationKinds.Person, Key = email, Reason = reason, SerialNumber = serial, CreatedAt = now, NextAttemptAt = due,
    };

    public void OnCrlSigned(CertPortalDbContext db, CrlRecord crl, DateTimeOffset now)
    {
        // One "pki" row brings both PKI entries in step; the root's CRL goes to LDAP only when it has an entry.
        if (options.IsEnabled && (crl.Authority == CertificateAuthority.IssuingName || !string.IsNullOrWhiteSpace(options.RootPkiEntryDn)))
            DirectoryOutbox.Enqueue(db, DirectoryPublicationKinds.Pki, DirectoryPublicationKinds.Pki, "crl", null, now, now);
    }
}

/// <summary>Delivers the outbox to the directory: in order per entry, with exponential backoff, and
/// without ever making enrollment or revocation wait for the directory.</summary>
public sealed class DirectoryOutbox(IServiceScopeFactory scopes, DirectoryOptions options, TimeProvider time, ILogger<DirectoryOutbox> logger)
    : BackgroundService
{
    public const string MeterName = "CertPortal.Directory";
    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> Outcomes = Meter.CreateCounter<long>("certportal.directory.publications",
        description: "Directory publications handled, by outcome (published, retried).");
    private const int BatchSize = 200;
    /// <summary>Taken by claims and lease renewals, so that they never interleave across nodes.</summary>
    internal const string ClaimLockName = "directory-outbox-claim";
    /// <summary>Names this process in leases: a random part first (a restarted process is another node, and
    /// cutting to the column's 64 characters keeps it unique), then process id and host for operators.</summary>
    private static readonly string NodeId = Truncate($"{Guid.NewGuid():N}:{Environment.ProcessId}:{Environment.MachineName}", 64);

    private static string Truncate(string s, int length) => s.Length <= length ? s : s[..length];

    // One pass at a time in this process (the worker, resync, tests): leases name the process, not the pass.
    private readonly SemaphoreSlim _pass = new(1, 1);

    public sealed record PassResult(int Published, int Retried, int Skipped);

    public static void Enqueue(CertPortalDbContext db, string kind, string key, string reason, string? serial, DateTimeOffset now, DateTimeOffset due) =>
        db.DirectoryPublications.Add(new DirectoryPublication
        {
            Kind = kind, Key = key, Reason = reason, SerialNumber = serial, CreatedAt = now, NextAttemptAt = due,
        });

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.IsEnabled) return;
        logger.LogInformation("Publishing to LDAP directory {Directory}", options.Url);
        await PollTimer.RunAsync(options.PollInterval, ProcessDueAsync, logger, "Directory outbox", stoppingToken);
    }

    /// <summary>One pass over the due rows this node could claim. Public so tests and resync can drive it directly.</summary>
    public async Task<PassResult> ProcessDueAsync(CancellationToken ct)
    {
        await _pass.WaitAsync(ct);
        try
        {
            return await ProcessClaimedAsync(ct);
        }
        finally
        {
            _pass.Release();
        }
    }

    public override void Dispose()
    {
        _pass.Dispose();
        base.Dispose();
    }

    private async Task<PassResult> ProcessClaimedAsync(CancellationToken ct)
    {
        using var scope = scopes.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var publisher = scope.ServiceProvider.GetRequiredService<DirectoryPublisher>();
        var now = time.GetUtcNow();
        // Delivered rows are kept a month for operators, then dropped.
        await db.DirectoryPublications.Where(p => p.CompletedAt != null && p.CompletedAt < now.AddDays(-30)).ExecuteDeleteAsync(ct);
        // Claimed before any entry is read: every row here was committed before its entry is reconciled,
        // so one reconciliation satisfies all claimed rows of that entry.
        var (due, until) = await ClaimAsync(db, now, ct);
        if (due.Count == 0) return new PassResult(0, 0, 0);

        int published = 0, retried = 0, skipped = 0;
        var directoryDown = false;
        var oneOperation = TimeSpan.FromSeconds(options.TimeoutSeconds);
        // The lease is renewed while the pass runs, but the rows it has not started are held from other nodes meanwhile, so a
        // pass starts no entry after half the lease: the rest go back to the queue at its end, for the next pass on any node.
        var startNoEntryAfter = now + options.ClaimLease / 2;
        var open = due.Select(r => r.Id).ToHashSet();
        await using var lease = new DirectoryOutboxLease(scopes, NodeId, open, until, options.ClaimLease, time, logger);
        try
        {
            // In order per entry (rows by id); the rows of one entry (its mailbox in any case) are reconciled once.
            foreach (var entry in due.GroupBy(r => (r.Kind, Key: EntryKey(r))))
            {
                var rows = entry.ToList();
                var ids = rows.Select(r => r.Id).ToList();
                if (directoryDown || time.GetUtcNow() >= startNoEntryAfter || !lease.Holds(ids, oneOperation))
                {
                    skipped += rows.Count;
                    continue;
                }
                open.ExceptWith(ids);
                var first = rows[0];
                var fence = new DirectoryWriteFence(() => lease.Holds(ids, oneOperation), first.Key,
                    first.Kind == DirectoryPublicationKinds.Person ? (mailboxes, c) => EnterPersonEntryAsync(db, entry.Key.Key, ids, mailboxes, c) : null);
                try
                {
                    await HandleAsync(db, publisher, first, fence, ct);
                    published += await CompleteAsync(db, ids);
                }
                catch (DirectoryEntryHeldElsewhereException)
                {
                    // Given back already, not failed: nothing went wrong, the entry is another node's until it is done.
                    skipped += rows.Count;
                    logger.LogInformation("Directory entry {Mail} is being reconciled by another node through another mailbox; left for a later pass",
                        first.Key);
                }
                catch (DirectoryException e)
                {
                    var attempts = first.Attempts + 1;
                    var error = e.Message.Length > 1000 ? e.Message[..1000] : e.Message;
                    var delay = TimeSpan.FromTicks(Math.Min(options.RetryMaxDelay.Ticks,
                        options.RetryBaseDelay.Ticks * (1L << Math.Min(attempts - 1, 20))));
                    // The first row carries the failure; the others wait behind it (never ahead of it in this pass).
                    await FailAsync(db, first.Id, ids, attempts, error, time.GetUtcNow() + delay);
                    retried++;
                    // Down or unreachable: every other row would fail the same way; wait for the next try.
                    directoryDown = e is DirectoryUnavailableException;
                    logger.LogWarning("Directory publication {Id} ({Kind} {Key}) failed, attempt {Attempts}, next in {Delay}: {Error}",
                        first.Id, first.Kind, first.Key, attempts, delay, error);
                }
            }
        }
        finally
        {
            // Not started: any node may take them up next. An entry whose handling threw something other than a directory
            // failure (cancellation, the database) keeps its lease until it runs out, since its LDAP call may still be running.
            await ReleaseAsync(db, open);
        }
        Outcomes.Add(published, new KeyValuePair<string, object?>("outcome", "published"));
        Outcomes.Add(retried, new KeyValuePair<string, object?>("outcome", "retried"));
        logger.LogInformation("Directory outbox pass: {Published} published, {Retried} retried, {Skipped} left for a later pass",
            published, retried, skipped);
        return new PassResult(published, retried, skipped);
    }

    /// <summary>A person entry is found by mail without regard to case (LDAP, and <see cref="DirectoryPublisher.DesiredAsync"/>),
    /// so rows naming one mailbox in two spellings are one entry.</summary>
    private static string EntryKey(DirectoryPublication row) =>
        row.Kind == DirectoryPublicationKinds.Person ? row.Key.ToLowerInvariant() : row.Key;

    /// <summary>Makes sure no other node is reconciling this person entry through another of its mailboxes (mail is
    /// multi-valued): the claim keeps other nodes off this mailbox's rows only, and two reconciliations of one entry interleave
    /// their reads and writes (a slower one puts back a certificate the other removed as revoked). When one is, this node's rows
    /// of the entry go back to the queue, in the same transaction under the claim's lock: of two nodes that each reached the
    /// entry through one alias, the first to look gives way and the second finds nothing in its way, so one always goes on.
    /// The node that goes on holds its rows' lease while it works, which every other node entering the entry finds here.</summary>
    /// <param name="key">The mailbox the rows name (<see cref="EntryKey"/>).</param>
    private async Task EnterPersonEntryAsync(CertPortalDbContext db, string key, List<long> ids, IReadOnlyCollection<string> mailboxes,
        CancellationToken ct)
    {
        var others = mailboxes.Select(m => m.ToLowerInvariant()).Where(m => m != key).Distinct().ToList();
        if (others.Count == 0) return; // the entry answers to this mailbox only, which the claim already keeps from other nodes
        var node = NodeId;
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        await db.LockNamedAsync(ClaimLockName, ct);
        var clock = await db.ReadLeaseClockAsync(time, ct);
        // As in ClaimAsync: lower() in SQL, which EF Core cannot make of string.Equals(..., OrdinalIgnoreCase).
#pragma warning disable CA1862
        var heldElsewhere = await db.DirectoryPublications.AnyAsync(q => q.Kind == DirectoryPublicationKinds.Person && q.CompletedAt == null
            && q.LeasedBy != null && q.LeasedBy != node && q.LeaseExpiresAt > clock.Shared && others.Contains(q.Key.ToLower()), ct);
#pragma warning restore CA1862
        if (heldElsewhere) await ReleaseAsync(db, ids);
        await tx.CommitAsync(ct);
        if (heldElsewhere) throw new DirectoryEntryHeldElsewhereException(key);
    }

    /// <summary>Marks the entry's rows done, but only those still leased to this node: a row another node took over is that
    /// node's to finish (the resync rows a sweep queued commit with it).</summary>
    private async Task<int> CompleteAsync(CertPortalDbContext db, List<long> ids)
    {
        var node = NodeId;
        var done = time.GetUtcNow();
        await using var tx = await db.Database.BeginTransactionAsync(CancellationToken.None);
        await db.SaveChangesAsync(CancellationToken.None);
        var completed = await db.DirectoryPublications.Where(p => ids.Contains(p.Id) && p.LeasedBy == node)
            .ExecuteUpdateAsync(s => s.SetProperty(p => p.CompletedAt, done).SetProperty(p => p.LeasedBy, (string?)null)
                .SetProperty(p => p.LeaseExpiresAt, (DateTimeOffset?)null), CancellationToken.None);
        await tx.CommitAsync(CancellationToken.None);
        return completed;
    }

    /// <summary>Records a failure on <paramref name="failedId"/> and gives the entry's rows back, again only those still leased
    /// to this node.</summary>
    private static async Task FailAsync(CertPortalDbContext db, long failedId, List<long> ids, int attempts, string error, DateTimeOffset next)
    {
        var node = NodeId;
        db.ChangeTracker.Clear(); // a sweep's rows queued before it failed are not saved
        await using var tx = await db.Database.BeginTransactionAsync(CancellationToken.None);
        await db.DirectoryPublications.Where(p => p.Id == failedId && p.LeasedBy == node)
            .ExecuteUpdateAsync(s => s.SetProperty(p => p.Attempts, attempts).SetProperty(p => p.LastError, error)
                .SetProperty(p => p.NextAttemptAt, next), CancellationToken.None);
        await ReleaseAsync(db, ids);
        await tx.CommitAsync(CancellationToken.None);
    }

    private static async Task ReleaseAsync(CertPortalDbContext db, IReadOnlyCollection<long> ids)
    {
        if (ids.Count == 0) return;
        var node = NodeId;
        await db.DirectoryPublications.Where(p => ids.Contains(p.Id) && p.LeasedBy == node && p.CompletedAt == null)
            .ExecuteUpdateAsync(s => s.SetProperty(p => p.LeasedBy, (string?)null).SetProperty(p => p.LeaseExpiresAt, (DateTimeOffset?)null),
                CancellationToken.None);
    }

    /// <summary>Leases up to a batch of due rows to this node, skipping every entry (kind and key) on which another
    /// node holds a live lease: two nodes reconciling one entry at once could interleave their reads and writes
    /// and leave a revoked certificate published. Row locks alone (FOR UPDATE SKIP LOCKED) cannot give that, since
    /// the rows of one entry are different rows; so claims take a short cluster-wide lock and check the entry's
    /// other rows, then mark theirs with a conditional UPDATE. A node that dies leaves its rows to others once the
    /// lease (Directory:ClaimLease) ends. Leases are written and compared on the database's clock (<see cref="LeaseClock"/>), so
    /// a node whose own clock is off neither takes an entry another holds nor writes a lease that ends early for the others.</summary>
    /// <param name="now">This node's time, which retries are scheduled on.</param>
    /// <returns>The rows, and when their lease ends on this node's clock (<see cref="LeaseTime.Own"/>).</returns>
    private async Task<(List<DirectoryPublication> Rows, DateTimeOffset Until)> ClaimAsync(CertPortalDbContext db, DateTimeOffset now,
        CancellationToken ct)
    {
        var node = NodeId;
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        await db.LockNamedAsync(ClaimLockName, ct);
        var clock = await db.ReadLeaseClockAsync(time, ct);
        // A mailbox in any case is one entry (see EntryKey). CA1862 would have string.Equals(..., OrdinalIgnoreCase), which EF
        // Core cannot translate; ToLower() becomes lower().
#pragma warning disable CA1862
        var heldElsewhere = db.DirectoryPublications.Where(q =>
            q.CompletedAt == null && q.LeasedBy != null && q.LeasedBy != node && q.LeaseExpiresAt > clock.Shared);
        var ids = await db.DirectoryPublications
            .Where(p => p.CompletedAt == null && p.NextAttemptAt <= now)
            .Where(p => !heldElsewhere.Any(q => q.Kind == p.Kind && q.Key.ToLower() == p.Key.ToLower()))
            .OrderBy(p => p.Id).Select(p => p.Id).Take(BatchSize).ToListAsync(ct);
#pragma warning restore CA1862
        var until = clock.Own + options.ClaimLease;
        if (ids.Count == 0) return ([], until);
        var leaseEnd = clock.Shared + options.ClaimLease;
        await db.DirectoryPublications
            .Where(p => ids.Contains(p.Id) && p.CompletedAt == null && (p.LeasedBy == null || p.LeasedBy == node || p.LeaseExpiresAt <= clock.Shared))
            .ExecuteUpdateAsync(s => s.SetProperty(p => p.LeasedBy, node).SetProperty(p => p.LeaseExpiresAt, leaseEnd), ct);
        await tx.CommitAsync(ct);
        // Not tracked: every later write to these rows is a conditional update on still holding them.
        var rows = await db.DirectoryPublications.AsNoTracking().Where(p => ids.Contains(p.Id) && p.LeasedBy == node)
            .OrderBy(p => p.Id).ToListAsync(ct);
        return (rows, until);
    }

    private async Task HandleAsync(CertPortalDbContext db, DirectoryPublisher publisher, DirectoryPublication row, DirectoryWriteFence fence,
        CancellationToken ct)
    {
        switch (row.Kind)
        {
            case DirectoryPublicationKinds.Person:
                var change = await publisher.SyncPersonAsync(db, row.Key, fence, ct);
                logger.LogInformation("Directory entry {Mail}: {Added} certificates added, {Removed} removed", row.Key, change.Added, change.Removed);
                break;
            case DirectoryPublicationKinds.Pki:
                await publisher.SyncPkiAsync(db, fence, ct);
                break;
            case DirectoryPublicationKinds.Sweep:
                var now = time.GetUtcNow();
                foreach (var mail in await publisher.MailboxesHoldingOurCertificatesAsync(ct))
                    Enqueue(db, DirectoryPublicationKinds.Person, mail, "resync", null, now, now);
                break;
        }
    }

    /// <summary>Resync: reconcile every entry the database knows, the PKI entry, and (through a sweep)
    /// every entry that holds one of our certificates although the database does not expect it.</summary>
    public static async Task<int> EnqueueResyncAsync(CertPortalDbContext db, DateTimeOffset now, CancellationToken ct)
    {
        var mailboxes = await db.Certificates.AsNoTracking().Select(c => c.Email).Distinct().ToListAsync(ct);
        foreach (var mail in mailboxes) Enqueue(db, DirectoryPublicationKinds.Person, mail, "resync", null, now, now);
        Enqueue(db, DirectoryPublicationKinds.Pki, DirectoryPublicationKinds.Pki, "resync", null, now, now);
        Enqueue(db, DirectoryPublicationKinds.Sweep, DirectoryPublicationKinds.Sweep, "resync", null, now, now);
        await db.SaveChangesAsync(ct);
        return mailboxes.Count + 2;
    }
}
