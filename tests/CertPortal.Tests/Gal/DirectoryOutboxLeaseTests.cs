using System.Diagnostics;
using CertPortal.Gal;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Gal;

/// <summary>A directory that answers slowly: every chunk to and from slapd delayed (<see cref="LatencyProxy"/>), a short
/// claim lease, and no background passes (the test drives the outbox).</summary>
public sealed class SlowDirectoryApp : DirectoryApp
{
    private LatencyProxy? _proxy;

    /// <summary>Made when the settings are first read, after slapd has its port.</summary>
    public LatencyProxy Proxy => _proxy ??= new LatencyProxy(Ldap.Port);

    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["Directory:Url"] = $"ldap://127.0.0.1:{Proxy.Port}";
            settings["Directory:PollInterval"] = "01:00:00";
            settings["Directory:ClaimLease"] = "00:00:04";
            settings["Directory:TimeoutSeconds"] = "2";
            return settings;
        }
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        _proxy?.Dispose();
    }
}

/// <summary>Another node may claim an entry once this node's lease on it has ended; if this node were still writing that
/// entry, two reconciliations would interleave and a revoked certificate could stay published (seen with three nodes and a
/// directory at 250 ms). A pass therefore starts no entry after half its lease and leaves the rest to the next pass.</summary>
public sealed class DirectoryOutboxLeaseTests(SlowDirectoryApp app) : IClassFixture<SlowDirectoryApp>
{
    [Fact]
    public async Task A_pass_over_a_slow_directory_starts_no_entry_after_half_its_lease_and_the_next_passes_finish_the_rest()
    {
        var outbox = app.Service<DirectoryOutbox>();
        await outbox.ProcessDueAsync(CancellationToken.None); // whatever start-up queued (the PKI entry)
        var emails = Enumerable.Range(0, 10).Select(i => $"slow{i}.{Guid.NewGuid().ToString("N")[..8]}@example.test").ToList();
        foreach (var email in emails) await app.IssueAsync(email, "encryption");

        // Each entry takes a search and a modify, each two delayed chunks: about a second an entry, ten seconds for all,
        // against a 4 s lease.
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
}
