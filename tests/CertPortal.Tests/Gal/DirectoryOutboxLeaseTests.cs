using System.Diagnostics;
using CertPortal.Data;
using CertPortal.Gal;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Gal;

/// <summary>A directory that answers slowly: every chunk to and from slapd delayed (<see cref="LatencyProxy"/>), a short
/// claim lease, and no background passes (the test drives the outbox). On SQLite, or on a PostgreSQL of its own.</summary>
public class SlowDirectoryApp : DirectoryApp
{
    private LatencyProxy? _proxy;
    private readonly PostgresServer? _postgres;
    private readonly string _database = "certportal_" + Guid.NewGuid().ToString("N")[..8];

    public SlowDirectoryApp() : this(postgres: false) { }

    protected SlowDirectoryApp(bool postgres) => _postgres = postgres ? new PostgresServer() : null;

    /// <summary>Made when the settings are first read, after slapd has its port.</summary>
    public LatencyProxy Proxy => _proxy ??= new LatencyProxy(Ldap.Port);

    /// <summary>This node's clock: the system's, unless a test sets it off from the database's (and the other nodes').</summary>
    public SteppedClock NodeClock { get; } = new();

    protected override void ConfigureServices(IServiceCollection services) => services.AddSingleton<TimeProvider>(NodeClock);

    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["Directory:Url"] = $"ldap://127.0.0.1:{Proxy.Port}";
            settings["Directory:PollInterval"] = "01:00:00";
            // An operation here is a request and an answer, each delayed (1.2 s at 600 ms, 1.6 s at 800 ms): a 3 s bound
            // leaves room for a loaded machine. A write needs an operation's length left on its lease, renewed every quarter of
            // it: at 6 s, 4.5 to 6 s are left after each renewal.
            settings["Directory:ClaimLease"] = "00:00:06";
            settings["Directory:TimeoutSeconds"] = "3";
            if (_postgres is not null)
            {
                settings["Database:Provider"] = "Postgres";
                settings["Database:ConnectionString"] = _postgres.ConnectionString(_database);
            }
            return settings;
        }
    }

    public override async Task InitializeAsync()
    {
        if (_postgres is not null) await _postgres.InitializeAsync();
        await base.InitializeAsync();
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        _proxy?.Dispose();
        if (_postgres is not null) await _postgres.DisposeAsync();
    }
}

public sealed class PostgresSlowDirectoryApp() : SlowDirectoryApp(postgres: true);

/// <summary>Another node may claim an entry once this node's lease on it has ended; if this node were still writing that
/// entry, two reconciliations would interleave and a revoked certificate could stay published (seen with three nodes and a
/// directory at 250 ms). A pass therefore starts no entry after half its lease and leaves the rest to the next pass.</summary>
public abstract class DirectoryOutboxLeaseTests(SlowDirectoryApp app)
{
    protected SlowDirectoryApp App => app;

    [Fact]
    public async Task A_pass_over_a_slow_directory_starts_no_entry_after_half_its_lease_and_the_next_passes_finish_the_rest()
    {
        var outbox = app.Service<DirectoryOutbox>();
        await outbox.ProcessDueAsync(CancellationToken.None); // whatever start-up queued (the PKI entry)
        var emails = Enumerable.Range(0, 10).Select(i => $"slow{i}.{Guid.NewGuid().ToString("N")[..8]}@example.test").ToList();
        foreach (var email in emails) await app.IssueAsync(email, "encryption");

        // Each entry takes a search and a modify, each two delayed chunks: about a second an entry, ten seconds for all,
        // against a 6 s lease.
        app.Proxy.Latency = TimeSpan.FromMilliseconds(150);
        var clock = Stopwatch.StartNew();
        var first = await outbox.ProcessDueAsync(CancellationToken.None);
        clock.Stop();
        Assert.True(first.Skipped > 0 && first.Published < emails.Count,
            $"one pass published {first.Published} rows and left {first.Skipped} in {clock.Elapsed.TotalSeconds:F1} s");

        // The rows left were released: the next passes (here on the same node) take them up until all are published.
        app.Proxy.Latency = TimeSpan.Zero;
        var deadline = Stopwatch.StartNew();
        while (emails.Any(e => app.PublishedCertificates(e).Count == 0))
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), "the rows a pass left were not published by later passes");
            await outbox.ProcessDueAsync(CancellationToken.None);
            await Task.Delay(250);
        }
        foreach (var email in emails) Assert.Single(app.PublishedCertificates(email));
    }

    [Fact]
    public async Task An_entry_that_takes_longer_than_the_lease_keeps_its_lease_until_it_is_done()
    {
        var (outbox, email) = await QueuedEntryAsync("long");

        // Reading the entry, then the publication's bind, search and two writes, each request and answer 800 ms late: about
        // eight seconds against a 6 s lease.
        app.Proxy.Latency = TimeSpan.FromMilliseconds(800);
        try
        {
            var started = DateTimeOffset.UtcNow;
            var pass = outbox.ProcessDueAsync(CancellationToken.None);
            await Task.Delay(TimeSpan.FromSeconds(7.2));
            if (pass.IsCompleted)
            {
                var early = await pass;
                using var scope = app.Service<IServiceScopeFactory>().CreateScope();
                var errors = string.Join("; ", await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>()
                    .DirectoryPublications.Where(r => r.Key == email && r.LastError != null).Select(r => r.LastError).ToListAsync());
                Assert.Fail($"the pass ended before its lease did ({early}, errors: {errors}); the test proves nothing");
            }
            // Past the lease the claim wrote: still leased to this node, so no other node could claim the entry.
            var rows = await RowsAsync(email);
            Assert.NotEmpty(rows);
            Assert.All(rows, r =>
            {
                Assert.NotNull(r.LeasedBy);
                Assert.True(r.LeaseExpiresAt > DateTimeOffset.UtcNow, $"lease ended at {r.LeaseExpiresAt:O} (pass started {started:O})");
            });
            var result = await pass;
            // Said with the row and its error: this failed once in a clean-clone CI (Retried 1, 844 passed) and passed 3 × 12
            // alone, and "Expected 0, Actual 1" did not say why.
            if (result.Retried != 0) Assert.Fail($"the pass retried a row ({result}): {await FailuresAsync()}");
        }
        finally
        {
            app.Proxy.Latency = TimeSpan.Zero;
        }
        Assert.Single(app.PublishedCertificates(email));
        Assert.All(await RowsAsync(email), r => { Assert.NotNull(r.CompletedAt); Assert.Null(r.LeasedBy); });
    }

    [Fact]
    public async Task A_node_whose_entry_was_taken_over_writes_nothing_more_to_it_and_leaves_its_rows_to_the_new_holder()
    {
        var (outbox, email) = await QueuedEntryAsync("taken");

        app.Proxy.Latency = TimeSpan.FromMilliseconds(600);
        try
        {
            var pass = outbox.ProcessDueAsync(CancellationToken.None);
            // Once this node has claimed the entry, another takes it over, as one would after this node's lease had run out
            // (a long pause of this process, or its database connection failing): the rows name the other node now.
            var deadline = Stopwatch.StartNew();
            while ((await RowsAsync(email)).Any(r => r.LeasedBy is null))
            {
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(10), "the pass never claimed the entry");
                await Task.Delay(20);
            }
            await SetLeaseAsync(email, "another-node", DateTimeOffset.UtcNow.AddHours(1));
            Assert.False(pass.IsCompleted, "the pass ended before the takeover; the test proves nothing");
            await pass;
        }
        finally
        {
            app.Proxy.Latency = TimeSpan.Zero;
        }
        // The first write of this node's reconciliation came seconds after the takeover: it was not sent, and the rows are
        // neither completed nor released nor marked failed by a node that no longer holds them.
        Assert.Empty(app.PublishedCertificates(email));
        Assert.All(await RowsAsync(email), r =>
        {
            Assert.Equal("another-node", r.LeasedBy);
            Assert.Null(r.CompletedAt);
            Assert.Equal(0, r.Attempts);
        });

        // The other node's lease ends without it finishing: this node takes the entry up again and publishes it.
        await SetLeaseAsync(email, "another-node", DateTimeOffset.UtcNow.AddSeconds(-1));
        await outbox.ProcessDueAsync(CancellationToken.None);
        Assert.Single(app.PublishedCertificates(email));
    }

    [Fact]
    public async Task A_mailbox_leased_by_another_node_in_another_case_is_not_claimed()
    {
        var (outbox, email) = await QueuedEntryAsync("case");
        // Another node is reconciling the same entry, queued under another spelling of the mailbox (a resync sweep writes
        // the entry's own spelling).
        using (var scope = app.Service<IServiceScopeFactory>().CreateScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            var now = DateTimeOffset.UtcNow;
            db.DirectoryPublications.Add(new DirectoryPublication
            {
                Kind = DirectoryPublicationKinds.Person, Key = email.ToUpperInvariant(), Reason = "resync", CreatedAt = now,
                NextAttemptAt = now, LeasedBy = "another-node", LeaseExpiresAt = now.AddHours(1),
            });
            await db.SaveChangesAsync();
        }

        await outbox.ProcessDueAsync(CancellationToken.None);
        Assert.Empty(app.PublishedCertificates(email));
        Assert.All((await RowsAsync(email)).Where(r => r.Key == email), r => Assert.Null(r.LeasedBy));

        // When the other node's lease has ended, one reconciliation covers both spellings.
        await SetLeaseAsync(email.ToUpperInvariant(), "another-node", DateTimeOffset.UtcNow.AddSeconds(-1));
        await outbox.ProcessDueAsync(CancellationToken.None);
        Assert.Single(app.PublishedCertificates(email));
        Assert.All(await RowsAsync(email), r => Assert.NotNull(r.CompletedAt));
    }

    [Fact]
    public async Task An_entry_another_node_holds_through_another_of_its_mail_values_is_not_reconciled_until_that_lease_ends()
    {
        var outbox = app.Service<DirectoryOutbox>();
        await outbox.ProcessDueAsync(CancellationToken.None);
        var id = Guid.NewGuid().ToString("N")[..8];
        var email = $"alias.{id}@example.test";
        var alias = $"nickname.{id}@example.test";
        // One person, two mailboxes (mail is multi-valued): rows for either reconcile the same entry.
        app.Ldap.Modify($"""
            dn: mail={email},{Slapd.PeopleDn}
            objectClass: inetOrgPerson
            mail: {email}
            mail: {alias}
            cn: Alias
            sn: Alias
            """, add: true);
        // Another node is reconciling that entry through the alias: its rows (keyed by the alias) are leased to it.
        using (var scope = app.Service<IServiceScopeFactory>().CreateScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            var now = DateTimeOffset.UtcNow;
            db.DirectoryPublications.Add(new DirectoryPublication
            {
                Kind = DirectoryPublicationKinds.Person, Key = alias, Reason = "resync", CreatedAt = now,
                NextAttemptAt = now, LeasedBy = "another-node", LeaseExpiresAt = now.AddHours(1),
            });
            await db.SaveChangesAsync();
        }
        await app.IssueAsync(email, "encryption");

        // Two reconcilers of one entry interleave their reads and writes (a revoked certificate put back by the slower one),
        // so this node writes nothing there and gives the rows back without counting a failure.
        await outbox.ProcessDueAsync(CancellationToken.None);
        Assert.Empty(app.PublishedCertificates(email));
        Assert.All(await RowsAsync(email), r =>
        {
            Assert.Null(r.LeasedBy);
            Assert.Null(r.CompletedAt);
            Assert.Equal(0, r.Attempts);
        });

        // The other node's lease ends without it finishing: this node reconciles the entry.
        await SetLeaseAsync(alias, "another-node", DateTimeOffset.UtcNow.AddSeconds(-1));
        await outbox.ProcessDueAsync(CancellationToken.None);
        Assert.Single(app.PublishedCertificates(email));
        Assert.All(await RowsAsync(email), r => Assert.NotNull(r.CompletedAt));
    }

    /// <summary>The outbox with nothing else due, and a new mailbox whose certificate's publication is queued.</summary>
    protected async Task<(DirectoryOutbox Outbox, string Email)> QueuedEntryAsync(string prefix)
    {
        var outbox = app.Service<DirectoryOutbox>();
        await outbox.ProcessDueAsync(CancellationToken.None);
        var email = $"{prefix}.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        await app.IssueAsync(email, "encryption");
        return (outbox, email);
    }

    /// <summary>Every row that failed, with its key and last error: what a guard that fires should say.</summary>
    protected async Task<string> FailuresAsync()
    {
        using var scope = app.Service<IServiceScopeFactory>().CreateScope();
        var rows = await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().DirectoryPublications.AsNoTracking()
            .Where(r => r.LastError != null).ToListAsync();
        return string.Join("; ", rows.Select(r => $"{r.Kind} {r.Key} (attempt {r.Attempts}, done {r.CompletedAt:O}): {r.LastError}"));
    }

    /// <summary>The outbox rows of a person entry that are due now (a scheduled expiry is not), in every spelling.</summary>
    protected async Task<List<DirectoryPublication>> RowsAsync(string email)
    {
        using var scope = app.Service<IServiceScopeFactory>().CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var lowered = email.ToLowerInvariant();
        var now = DateTimeOffset.UtcNow;
        return (await db.DirectoryPublications.AsNoTracking().ToListAsync())
            .Where(r => r.Key.Equals(lowered, StringComparison.OrdinalIgnoreCase) && r.NextAttemptAt <= now).ToList();
    }

    /// <summary>Writes a lease on the entry's rows spelt exactly <paramref name="key"/>, as another node's claim would.</summary>
    protected async Task SetLeaseAsync(string key, string node, DateTimeOffset until)
    {
        using var scope = app.Service<IServiceScopeFactory>().CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        await db.DirectoryPublications.Where(r => r.Key == key && r.CompletedAt == null && r.Reason != "expiry")
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.LeasedBy, node).SetProperty(r => r.LeaseExpiresAt, until));
    }
}

public sealed class SqliteDirectoryOutboxLeaseTests(SlowDirectoryApp app) : DirectoryOutboxLeaseTests(app), IClassFixture<SlowDirectoryApp>;

/// <summary>With several nodes (PostgreSQL), also a node whose clock is off from the others' by far more than an operation
/// (Directory:TimeoutSeconds, the margin a write needs left on its lease): leases are timed on the database's clock, so such a
/// node neither takes an entry another holds nor writes a lease the others see ending early. Before, each node timed leases on
/// its own clock, and a minute off was enough for two nodes to reconcile one entry at once. The other node here is the test,
/// writing leases on the database's clock, which is this machine's.</summary>
public sealed class PostgresDirectoryOutboxLeaseTests(PostgresSlowDirectoryApp app) : DirectoryOutboxLeaseTests(app), IClassFixture<PostgresSlowDirectoryApp>
{
    [Fact]
    public async Task A_node_whose_clock_is_ahead_does_not_claim_an_entry_another_node_holds()
    {
        var (outbox, email) = await QueuedEntryAsync("ahead");
        await SetLeaseAsync(email, "another-node", DateTimeOffset.UtcNow.AddSeconds(30));
        App.NodeClock.Offset = TimeSpan.FromMinutes(1);
        try
        {
            await outbox.ProcessDueAsync(CancellationToken.None);
            Assert.Empty(App.PublishedCertificates(email));
            Assert.All(await RowsAsync(email), r => Assert.Equal("another-node", r.LeasedBy));

            // The other node's lease ends without it finishing: this node takes the entry up.
            await SetLeaseAsync(email, "another-node", DateTimeOffset.UtcNow.AddSeconds(-1));
            await outbox.ProcessDueAsync(CancellationToken.None);
            Assert.Single(App.PublishedCertificates(email));
        }
        finally
        {
            App.NodeClock.Offset = TimeSpan.Zero;
        }
    }

    [Fact]
    public async Task A_node_whose_clock_is_behind_holds_its_entry_for_the_whole_lease_as_the_others_see_it()
    {
        // Set first: queued on this node's clock, the rows are due on it.
        App.NodeClock.Offset = TimeSpan.FromMinutes(-1);
        try
        {
            var (outbox, email) = await QueuedEntryAsync("behind");
            // Slow enough that the pass is still at its first LDAP operation when the rows are read below.
            App.Proxy.Latency = TimeSpan.FromMilliseconds(600);
            var pass = outbox.ProcessDueAsync(CancellationToken.None);
            var deadline = Stopwatch.StartNew();
            List<DirectoryPublication> rows;
            while ((rows = await RowsAsync(email)).Any(r => r.LeasedBy is null))
            {
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(10), "the pass never claimed the entry");
                await Task.Delay(20);
            }
            // On the database's clock, which the other nodes compare with: the 6 s lease has most of its length ahead.
            var now = DateTimeOffset.UtcNow;
            Assert.All(rows, r => Assert.True(r.LeaseExpiresAt > now.AddSeconds(3), $"the lease ends at {r.LeaseExpiresAt:O}, now is {now:O}"));
            var result = await pass;
            if (result.Retried != 0) Assert.Fail($"the pass retried a row ({result}): {await FailuresAsync()}");
            Assert.Single(App.PublishedCertificates(email));
        }
        finally
        {
            App.Proxy.Latency = TimeSpan.Zero;
            App.NodeClock.Offset = TimeSpan.Zero;
        }
    }
}
