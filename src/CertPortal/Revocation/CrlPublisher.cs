using System.Collections.Concurrent;
using System.Threading.Channels;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Revocation;

/// <summary>The latest CRL of a CA as this node serves it: bytes and the validators of conditional requests.</summary>
public sealed record PublishedCrl(string Authority, long Number, DateTimeOffset ThisUpdate, DateTimeOffset NextUpdate, int EntryCount, byte[] Der)
{
    /// <summary>Strong validator: a CA's CRL number names exactly one CRL.</summary>
    public string ETag => $"\"{Authority}-{Number}\"";
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

    /// <summary>The CRL this node serves; null only before the first one exists.</summary>
    public async Task<PublishedCrl?> ServedAsync(string authority, CancellationToken ct)
    {
        if (_served.TryGetValue(authority, out var crl)) return crl;
        await using var scope = scopes.CreateAsyncScope();
        return await LoadAsync(scope.ServiceProvider.GetRequiredService<CertPortalDbContext>(), authority, null, ct);
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
                    await Task.Delay(options.Crl.PublishDelay, time, stoppingToken);
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

    /// <summary>Signs a CRL for every CA that owes one (changes pending, or due for refresh), then makes sure this node
    /// serves the latest CRL of each CA, whoever signed it. Returns how many CRLs this call signed.</summary>
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
                if (await OwesCrlAsync(db, authority, ct))
                {
                    // Before the transaction: on SQLite it holds the write lock, which enrollments need meanwhile.
                    await CrlSigner.WaitForNextSecondAsync(db, authority, time, ct);
                    await using var tx = await db.Database.BeginTransactionAsync(ct);
                    // The signer's lock is taken first thing in SignAsync; what is read after it is what the previous
                    // signer committed. Changes are read before the certificates: each was committed with its
                    // certificate's new state, so the CRL signed below shows every change deleted with it.
                    await db.LockNamedAsync("crl:" + authority, ct);
                    var changes = await db.CrlChanges.Where(c => c.Authority == authority).Select(c => c.Id).ToListAsync(ct);
                    if (changes.Count > 0 || await OwesCrlAsync(db, authority, ct))
                    {
                        var crl = await signer.SignAsync(db, authority, time.GetUtcNow(), Actor, ct);
                        if (changes.Count > 0) await db.CrlChanges.Where(c => changes.Contains(c.Id)).ExecuteDeleteAsync(ct);
                        await db.SaveChangesAsync(ct);
                        await tx.CommitAsync(ct);
                        db.ChangeTracker.Clear();
                        _served[authority] = new PublishedCrl(authority, crl.Number, crl.ThisUpdate, crl.NextUpdate, crl.EntryCount, crl.Der);
                        logger.LogInformation("Signed {Authority} CRL number {Number} with {Entries} entries for {Changes} changes, next update {NextUpdate}",
                            authority, crl.Number, crl.EntryCount, changes.Count, crl.NextUpdate);
                        signed++;
                        continue;
                    }
                    await tx.RollbackAsync(ct);
                }
                await LoadAsync(db, authority, _served.GetValueOrDefault(authority), ct);
            }
            return signed;
        }
        finally
        {
            _pass.Release();
        }
    }

    private async Task<bool> OwesCrlAsync(CertPortalDbContext db, string authority, CancellationToken ct)
    {
        if (await db.CrlChanges.AnyAsync(c => c.Authority == authority, ct)) return true;
        var latest = await db.Crls.AsNoTracking().Where(c => c.Authority == authority).OrderByDescending(c => c.Number)
            .Select(c => new { c.ThisUpdate }).FirstOrDefaultAsync(ct);
        var refreshAfter = authority == CertificateAuthority.RootName ? options.Crl.RootLifetime / 2 : options.Crl.RefreshAfter;
        return latest is null || latest.ThisUpdate + refreshAfter <= time.GetUtcNow();
    }

    /// <summary>Reads the bytes only when the database has a newer CRL than the one served.</summary>
    private async Task<PublishedCrl?> LoadAsync(CertPortalDbContext db, string authority, PublishedCrl? current, CancellationToken ct)
    {
        var number = await db.Crls.Where(c => c.Authority == authority).MaxAsync(c => (long?)c.Number, ct);
        if (number is null) return null;
        if (current is not null && current.Number >= number) return current;
        var crl = await db.Crls.AsNoTracking().FirstOrDefaultAsync(c => c.Authority == authority && c.Number == number, ct);
        if (crl is null) return current; // replaced in between; the next round loads the newer one
        var published = new PublishedCrl(authority, crl.Number, crl.ThisUpdate, crl.NextUpdate, crl.EntryCount, crl.Der);
        _served.AddOrUpdate(authority, published, (_, old) => old.Number >= published.Number ? old : published);
        return _served[authority];
    }

    public override void Dispose()
    {
        _pass.Dispose();
        base.Dispose();
    }
}
