using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Gal;
using CertPortal.Tests.Gal;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Mail;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Npgsql;

namespace CertPortal.Tests.Cluster;

/// <summary>Scheduled directory-driven enrollment with two nodes on one PostgreSQL database, one slapd and one SMTP server:
/// when both schedulers find the run due at the same moment, one run happens and each person is invited once.</summary>
public sealed class ScheduledDirectoryEnrollmentTests(PostgresServer postgres) : IClassFixture<PostgresServer>
{
    private const int People = 200;

    [Fact]
    public async Task Two_nodes_due_at_once_start_one_run_and_each_person_is_invited_once()
    {
        var ldap = new Slapd();
        var smtp = new SmtpServer();
        await ldap.InitializeAsync();
        await smtp.InitializeAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var settings = new Dictionary<string, string?>(MailApp.MailSettings(smtp.Port));
        foreach (var (k, v) in DirectoryApp.DirectorySettings(ldap)) settings[k] = v;
        settings["Database:Provider"] = "Postgres";
        settings["Database:ConnectionString"] = postgres.ConnectionString("dirrun_" + Guid.NewGuid().ToString("N")[..8]);
        settings["DirectoryEnrollment:Enabled"] = "true";
        settings["DirectoryEnrollment:Interval"] = "1.00:00:00";
        var a = new MailNode(clock, settings);
        var b = new MailNode(clock, settings);
        try
        {
            await a.InitializeAsync();
            await b.InitializeAsync();
            // At start each scheduler looked once: the directory was still empty, and one run stands for this period.
            var first = Assert.Single(await ScheduledRunsAsync(a, finished: 1));
            Assert.Equal(0, first.GetProperty("found").GetInt32());

            var run = Guid.NewGuid().ToString("N")[..6];
            ldap.Modify(DirectoryPeople.Ldif(run, People).ToString(), add: true);
            clock.Advance(TimeSpan.FromDays(1) + TimeSpan.FromMinutes(1));

            // Due on both nodes at once, each asking twice: one run for the period, whoever wins.
            var reports = await Task.WhenAll(RunIfDueAsync(a), RunIfDueAsync(b), RunIfDueAsync(a), RunIfDueAsync(b));
            Assert.True(reports.Count(r => r is not null) <= 1); // a worker's own minute tick may have been the one
            var runs = await ScheduledRunsAsync(b, finished: 2);
            Assert.Equal(2, runs.Count);
            Assert.Equal(People, runs[0].GetProperty("invited").GetInt32());
            Assert.Equal(0, runs[0].GetProperty("failed").GetInt32());
            Assert.Equal(JsonValueKind.Null, runs[0].GetProperty("error").ValueKind);

            // Once more on both: the period's run is done.
            Assert.All(await Task.WhenAll(RunIfDueAsync(a), RunIfDueAsync(b)), Assert.Null);
            await using (var db = new NpgsqlConnection(settings["Database:ConnectionString"]))
            {
                await db.OpenAsync();
                Assert.Equal(People, await TokensPerMailboxAsync(db, run, max: 1));
            }
            var ours = await smtp.WaitForAsync(all => all.Count(m => m.To.ToString().Contains(run, StringComparison.Ordinal)) >= People, seconds: 180);
            await Task.Delay(1000);
            var arrived = smtp.Messages().Where(m => m.To.ToString().Contains(run, StringComparison.Ordinal)).Select(m => m.To.ToString()).ToList();
            Assert.Equal(People, arrived.Count);
            Assert.Equal(People, arrived.Distinct().Count());

            // (After the messages are out: moving the fake clock mid-send would expire the senders' leases.)
            // While a node carries out a run (here: the test holds its lock through node a), a run that would invite
            // is refused on the other node (409) and its scheduler waits; a dry run changes nothing and may go ahead.
            await using (var scope = a.Services.CreateAsyncScope())
            await using (var held = await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>()
                             .TryHoldNamedAsync(DirectoryEnrollment.RunLock, CancellationToken.None))
            {
                Assert.NotNull(held);
                await Http.AssertProblem(await b.Admin.PostAsJsonAsync("/api/v1/directory/enrollment-runs", new { dryRun = false }), System.Net.HttpStatusCode.Conflict);
                await Http.EnsureStatus(await b.Admin.PostAsJsonAsync("/api/v1/directory/enrollment-runs", new { dryRun = true }), System.Net.HttpStatusCode.OK);
                clock.Advance(TimeSpan.FromDays(1) + TimeSpan.FromMinutes(1));
                Assert.Null(await RunIfDueAsync(b));
            }

            // An administrator's run whose node died half-way (its row never finished): the next run that takes the lock
            // closes it as abandoned, so the console does not show it running for ever.
            long orphan;
            await using (var scope = a.Services.CreateAsyncScope())
            {
                var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
                var row = new DirectoryEnrollmentRun { StartedAt = clock.GetUtcNow(), StartedBy = "admin-on-a-dead-node" };
                db.DirectoryEnrollmentRuns.Add(row);
                await db.SaveChangesAsync();
                orphan = row.Id;
            }
            await Http.EnsureStatus(await b.Admin.PostAsJsonAsync("/api/v1/directory/enrollment-runs", new { dryRun = false }), System.Net.HttpStatusCode.OK);
            var closed = (await b.Admin.GetFromJsonAsync<JsonElement[]>("/api/v1/directory/enrollment-runs", Http.Json))!
                .Single(r => r.GetProperty("id").GetInt64() == orphan);
            Assert.Equal(DirectoryEnrollment.AbandonedError, closed.GetProperty("error").GetString());
            Assert.NotEqual(JsonValueKind.Null, closed.GetProperty("finishedAt").ValueKind);
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
            await smtp.DisposeAsync();
            await ldap.DisposeAsync();
        }
    }

    internal static async Task<DirectoryEnrollmentReport?> RunIfDueAsync(CertPortalApp node)
    {
        await using var scope = node.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<DirectoryEnrollment>().RunIfDueAsync(CancellationToken.None);
    }

    /// <summary>The scheduled runs, newest first, once at least <paramref name="finished"/> have finished.</summary>
    internal static async Task<List<JsonElement>> ScheduledRunsAsync(HttpClient admin, int finished, int seconds = 120)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var runs = (await admin.GetFromJsonAsync<JsonElement[]>("/api/v1/directory/enrollment-runs", Http.Json))!
                .Where(r => r.GetProperty("startedBy").GetString() == DirectoryEnrollment.ScheduleActor).ToList();
            if (runs.Count(r => r.GetProperty("finishedAt").ValueKind != JsonValueKind.Null) >= finished) return runs;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"fewer than {finished} scheduled runs finished: {string.Join(", ", runs)}");
            await Task.Delay(200);
        }
    }

    private static Task<List<JsonElement>> ScheduledRunsAsync(CertPortalApp node, int finished) => ScheduledRunsAsync(node.Admin, finished);

    /// <summary>How many of this test's mailboxes hold a token; fails when one holds more than <paramref name="max"/>.</summary>
    internal static async Task<int> TokensPerMailboxAsync(NpgsqlConnection db, string run, int max)
    {
        await using var count = new NpgsqlCommand(
            "SELECT \"Email\", count(*) FROM \"EnrollmentTokens\" WHERE \"Email\" LIKE @pattern GROUP BY \"Email\"", db);
        count.Parameters.AddWithValue("pattern", $"%.{run}@example.com");
        var mailboxes = 0;
        await using var rows = await count.ExecuteReaderAsync();
        while (await rows.ReadAsync())
        {
            mailboxes++;
            Assert.True(rows.GetInt64(1) <= max, $"{rows.GetString(0)} was invited {rows.GetInt64(1)} times");
        }
        return mailboxes;
    }
}

/// <summary>A node killed with SIGKILL (a real process) in the middle of a scheduled run of 500 people: the next node to
/// look finds the run abandoned, runs again at once, invites exactly the people the dead node had not reached, and
/// nobody is invited twice, in tokens or in messages.</summary>
public sealed class DirectoryEnrollmentNodeKillTests : IAsyncLifetime
{
    private const int People = 500;
    private readonly PostgresServer _postgres = new();
    private readonly Slapd _ldap = new();
    private readonly SmtpServer _smtp = new();
    private readonly List<CertPortalNode> _nodes = [];

    public async Task InitializeAsync() => await Task.WhenAll(_postgres.InitializeAsync(), _ldap.InitializeAsync(), _smtp.InitializeAsync());

    public async Task DisposeAsync()
    {
        foreach (var node in _nodes) await node.DisposeAsync();
        await _smtp.DisposeAsync();
        await _ldap.DisposeAsync();
        await _postgres.DisposeAsync();
    }

    [Fact]
    public async Task The_next_run_on_another_node_invites_the_rest_and_nobody_twice()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        _ldap.Modify(DirectoryPeople.Ldif(run, People).ToString(), add: true);
        var connectionString = _postgres.ConnectionString("dirkill");
        var portA = FreePort.Next();
        var settings = new Dictionary<string, string>
        {
            ["PublicBaseUrl"] = $"http://127.0.0.1:{portA}",
            ["Database:Provider"] = "Postgres",
            ["Database:ConnectionString"] = connectionString,
            ["DirectoryEnrollment:Enabled"] = "true",
            ["DirectoryEnrollment:Interval"] = "1.00:00:00",
        };
        foreach (var (k, v) in DirectoryApp.DirectorySettings(_ldap)) settings[k] = v!;
        foreach (var (k, v) in MailApp.MailSettings(_smtp.Port)) settings[k] = v!;
        var doomed = new CertPortalNode("a", new Dictionary<string, string>(settings)
        {
            // Node a only queues: a message SMTP accepted in the instant before the kill, not yet marked sent, is the one
            // thing the mail outbox may send twice (at least once, by design), and is not what this test is about.
            ["Mail:PollInterval"] = "1.00:00:00",
        }, port: portA);
        _nodes.Add(doomed);
        doomed.Start();

        // Its scheduler starts the run at start-up; kill the node once it has invited some of the 500.
        await using var db = new NpgsqlConnection(connectionString);
        var deadline = DateTime.UtcNow.AddSeconds(240);
        long invitedBeforeKill;
        while (true)
        {
            invitedBeforeKill = await CountTokensAsync(db, run);
            if (invitedBeforeKill >= 50) break;
            if (DateTime.UtcNow > deadline || !doomed.IsRunning) throw new Xunit.Sdk.XunitException($"node a did not start inviting:\n{doomed.Output}");
            await Task.Delay(20);
        }
        doomed.Kill();
        invitedBeforeKill = await CountTokensAsync(db, run);
        Assert.InRange(invitedBeforeKill, 50, People - 1);

        // Another node comes up: its scheduler finds the run unfinished with nobody holding it, and carries on at once.
        var next = new CertPortalNode("b", settings);
        _nodes.Add(next);
        next.Start();
        await next.WaitReadyAsync();
        var runs = await ScheduledDirectoryEnrollmentTests.ScheduledRunsAsync(next.Client(admin: true), finished: 2, seconds: 240);
        Assert.Equal(2, runs.Count);
        Assert.Equal(DirectoryEnrollment.AbandonedError, runs[1].GetProperty("error").GetString());
        var carriedOn = runs[0];
        Assert.Equal(JsonValueKind.Null, carriedOn.GetProperty("error").ValueKind);
        Assert.Equal(People, carriedOn.GetProperty("found").GetInt32());
        Assert.Equal(invitedBeforeKill, carriedOn.GetProperty("recentlyInvited").GetInt32());
        Assert.Equal(People - invitedBeforeKill, carriedOn.GetProperty("invited").GetInt32());

        // Everyone holds exactly one invitation, and node b sends every message, those node a queued included, once.
        Assert.Equal(People, await ScheduledDirectoryEnrollmentTests.TokensPerMailboxAsync(db, run, max: 1));
        await _smtp.WaitForAsync(all => all.Count(m => m.To.ToString().Contains(run, StringComparison.Ordinal)) >= People, seconds: 240);
        await Task.Delay(1000);
        var arrived = _smtp.Messages().Where(m => m.To.ToString().Contains(run, StringComparison.Ordinal)).Select(m => m.To.ToString()).ToList();
        Assert.Equal(People, arrived.Count);
        Assert.Equal(People, arrived.Distinct().Count());
    }

    internal static async Task<long> CountTokensAsync(NpgsqlConnection db, string run)
    {
        if (db.State != System.Data.ConnectionState.Open)
        {
            try
            {
                await db.OpenAsync();
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InvalidCatalogName)
            {
                return 0; // the node has not created the database yet
            }
        }
        try
        {
            await using var count = new NpgsqlCommand("SELECT count(*) FROM \"EnrollmentTokens\" WHERE \"Email\" LIKE @pattern", db);
            count.Parameters.AddWithValue("pattern", $"%.{run}@example.com");
            return Convert.ToInt64(await count.ExecuteScalarAsync(), CultureInfo.InvariantCulture);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UndefinedTable)
        {
            return 0; // not migrated yet
        }
    }
}
