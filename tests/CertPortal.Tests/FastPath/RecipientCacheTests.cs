using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Gal;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.FastPath;

/// <summary>The look-up cache on two nodes (separate processes) sharing one PostgreSQL database: a change made
/// through one node reaches the other's answers within the poll interval, not after the staleness backstop.</summary>
public sealed class RecipientCacheAcrossNodesTests(PostgresServer postgres) : IClassFixture<PostgresServer>
{
    // The backstop far away: only the change log can make node b drop its cached answer in time.
    private const double BoundSeconds = 0.5 + 1.5; // Lookup:PollInterval plus the poll's query and scheduling on a busy machine

    [Fact]
    public async Task Issue_hold_release_and_revoke_on_one_node_show_on_the_other_within_the_poll_interval()
    {
        var settings = new Dictionary<string, string>
        {
            ["Database:Provider"] = "Postgres",
            ["Database:ConnectionString"] = postgres.ConnectionString("lookup_" + Guid.NewGuid().ToString("N")[..8]),
            ["Lookup:PollInterval"] = "00:00:00.5",
            ["Lookup:MaxStaleness"] = "00:10:00",
            // The test places a hold, which the BR allow only for multipurpose (not strict) certificates.
            ["Issuance:PolicyOids:0"] = CertPortal.Authority.Oids.PolicyMailboxValidatedMultipurpose,
        };
        await using var a = await CertPortalNode.StartedAsync("a", settings);
        await using var b = await CertPortalNode.StartedAsync("b", settings);
        using var adminA = a.Client(admin: true);
        using var clientA = a.Client();
        using var clientB = b.Client();

        const string email = "across.nodes@example.test";
        var first = await EnrollAsync(adminA, clientA, email);
        Assert.Equal([first], await SerialsAsync(clientB, email));
        for (var i = 0; i < 20; i++) Assert.Equal([first], await SerialsAsync(clientB, email)); // answered from b's cache

        await Http.EnsureStatus(await adminA.PostAsJsonAsync($"/api/v1/certificates/{first}/revoke", new { reason = "certificateHold" }), HttpStatusCode.OK);
        await WithinBoundAsync(clientB, email, []);

        await Http.EnsureStatus(await adminA.PostAsync($"/api/v1/certificates/{first}/release", null), HttpStatusCode.OK);
        await WithinBoundAsync(clientB, email, [first]);

        var second = await EnrollAsync(adminA, clientA, email);
        await WithinBoundAsync(clientB, email, [second, first]);

        await Http.EnsureStatus(await adminA.PostAsJsonAsync($"/api/v1/certificates/{second}/revoke", new { reason = "keyCompromise" }), HttpStatusCode.OK);
        await WithinBoundAsync(clientB, email, [first]);
    }

    private static async Task WithinBoundAsync(HttpClient client, string email, string[] expected)
    {
        var clock = Stopwatch.StartNew();
        string[] seen;
        do
        {
            seen = await SerialsAsync(client, email);
            if (seen.SequenceEqual(expected)) return;
            await Task.Delay(25);
        }
        while (clock.Elapsed.TotalSeconds < BoundSeconds);
        Assert.Fail($"after {clock.Elapsed.TotalSeconds:F2} s node b still answers [{string.Join(", ", seen)}], expected [{string.Join(", ", expected)}]");
    }

    private static async Task<string> EnrollAsync(HttpClient admin, HttpClient client, string email)
    {
        var t = await admin.PostAsJsonAsync("/api/v1/tokens", new { email, displayName = "Across", profile = "encryption", validHours = 1 });
        await Http.EnsureStatus(t, HttpStatusCode.Created);
        var token = (await t.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("token").GetString();
        var r = await client.PostAsJsonAsync("/api/v1/enrollments", new { token, csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email) });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        // Certificates are listed newest first by notBefore, which has one-second resolution.
        await Task.Delay(1100);
        return (await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("serialNumber").GetString()!;
    }

    private static async Task<string[]> SerialsAsync(HttpClient client, string email)
    {
        var r = await client.GetAsync($"/api/v1/directory/{email}/certificates?usage=encryption");
        if (r.StatusCode == HttpStatusCode.NotFound) return [];
        await Http.EnsureStatus(r, HttpStatusCode.OK);
        var doc = await r.Content.ReadFromJsonAsync<JsonElement>();
        return doc.GetProperty("certificates").EnumerateArray().Select(c => c.GetProperty("serialNumber").GetString()!).ToArray();
    }
}

/// <summary>The cache in one process: repeated look-ups do not read the database, the node that made a change
/// answers with it at once, and the number of mailboxes kept is bounded.</summary>
public sealed class RecipientCacheTests(RecipientCacheTests.SmallCacheApp app) : IClassFixture<RecipientCacheTests.SmallCacheApp>
{
    public sealed class SmallCacheApp : CertPortalApp
    {
        protected override IDictionary<string, string?> Settings => new Dictionary<string, string?> { ["Lookup:MaxMailboxes"] = "5" };
    }

    [Fact]
    public async Task Repeated_lookups_are_answered_from_memory_and_a_revocation_here_shows_at_once()
    {
        var cache = app.Service<RecipientCache>();
        var (cert, _) = await app.IssueAsync("cached@example.test", "signing");
        await WaitWatchingAsync(cache);
        var url = "/api/v1/directory/cached@example.test/certificates?usage=signing";
        await Http.EnsureStatus(await app.Client.GetAsync(url), HttpStatusCode.OK);
        var loads = cache.Loads;
        for (var i = 0; i < 100; i++) await Http.EnsureStatus(await app.Client.GetAsync(url), HttpStatusCode.OK);
        Assert.Equal(loads, cache.Loads);

        // No waiting for the poll: the node that issued or revoked drops its answer when the change commits. On SQLite (one
        // node per database) that is all there is to do: no change row is written for other nodes to read.
        var (second, _) = await app.IssueAsync("cached@example.test", "signing");
        Assert.Contains(second.SerialNumber, await app.Client.GetStringAsync(url), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(second.SerialNumber, "keyCompromise")).StatusCode);
        Assert.DoesNotContain(second.SerialNumber, await app.Client.GetStringAsync(url), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(cert.SerialNumber, "keyCompromise")).StatusCode);
        await Http.AssertProblem(await app.Client.GetAsync(url), HttpStatusCode.NotFound);
        await using var scope = app.Services.CreateAsyncScope();
        Assert.False(await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().CertificateChanges.AnyAsync());
    }

    [Fact]
    public async Task The_cache_keeps_at_most_MaxMailboxes_and_answers_the_rest_from_the_database()
    {
        var cache = app.Service<RecipientCache>();
        await WaitWatchingAsync(cache);
        for (var i = 0; i < 20; i++)
            await Http.AssertProblem(await app.Client.GetAsync($"/api/v1/directory/bound{i}@example.test/certificates"), HttpStatusCode.NotFound);
        Assert.InRange(cache.Count, 1, 5);
    }

    /// <summary>Until the first poll has found where the change log stands (the cache keeps nothing before).</summary>
    private static async Task WaitWatchingAsync(RecipientCache cache)
    {
        await Eventually.TrueAsync(() => cache.Watching, () => "the cache never started watching the change log", TimeSpan.FromSeconds(10));
    }
}

/// <summary>Answers past their validity leave the cache with their bytes: the memory follows the mailboxes asked for
/// within <c>Lookup:MaxStaleness</c>, not every mailbox ever asked for up to the bound.</summary>
public sealed class RecipientCacheExpiryTests(RecipientCacheExpiryTests.ClockApp app) : IClassFixture<RecipientCacheExpiryTests.ClockApp>
{
    public sealed class ClockApp : CertPortalApp
    {
        public ClockApp() => Clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
    }

    [Fact]
    public async Task Answers_past_MaxStaleness_are_dropped_and_read_again_when_asked()
    {
        var cache = app.Service<RecipientCache>();
        await Eventually.TrueAsync(() => cache.Watching, () => "the cache never started watching the change log", TimeSpan.FromSeconds(10));
        var run = Guid.NewGuid().ToString("N")[..6];
        var issued = new List<(string Email, string Serial)>();
        for (var i = 0; i < 6; i++)
        {
            var email = $"expiry{i}.{run}@example.test";
            issued.Add((email, (await app.IssueAsync(email, "signing")).Cert.SerialNumber));
        }

        async Task AskAllAsync()
        {
            foreach (var (email, serial) in issued)
            {
                using var r = await app.Client.GetAsync($"/api/v1/directory/{email}/certificates?usage=signing");
                Assert.Equal(HttpStatusCode.OK, r.StatusCode);
                Assert.Equal(serial, (await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("certificates")[0].GetProperty("serialNumber").GetString());
            }
        }

        await AskAllAsync();
        Assert.Equal(issued.Count, cache.Count);
        Assert.True(cache.CachedBytes > 0);

        // Past MaxStaleness (30 s) every answer is read again; within a sweep (a second, on the poll's timer) none is held.
        app.Clock!.Advance(app.Service<CertPortalOptions>().Lookup.MaxStaleness + TimeSpan.FromSeconds(1));
        var clock = Stopwatch.StartNew();
        while (cache.Count > 0 && clock.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(50);
        Assert.Equal(0, cache.Count);
        Assert.Equal(0, cache.CachedBytes);
        Assert.Equal(0, cache.RecountBytes());

        var loads = cache.Loads;
        await AskAllAsync();
        Assert.Equal(loads + issued.Count, cache.Loads);
        Assert.Equal(issued.Count, cache.Count);
        Assert.Equal(cache.RecountBytes(), cache.CachedBytes);
    }
}
