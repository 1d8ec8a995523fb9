using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Gal;
using CertPortal.Tests.Infrastructure;
using Npgsql;

namespace CertPortal.Tests.Cluster;

/// <summary>Two nodes on one PostgreSQL database. Node a's run checks that it still holds the run lock, starts its first
/// invitation, and loses the lock (its session terminated) before that invitation commits; node b then takes the lock and
/// runs. Each person still gets one invitation. Before: node a's invitation committed after node b had read who was
/// invited already, so node b invited the same person again and two messages arrived.</summary>
public sealed class DirectoryEnrollmentLockGapTests(PostgresServer postgres) : IClassFixture<PostgresServer>, IAsyncLifetime
{
    private const int People = 3;
    private readonly Slapd _ldap = new();
    private readonly SmtpServer _smtp = new();
    private readonly string _run = Guid.NewGuid().ToString("N")[..6];
    private SchedulerlessNode _a = null!;
    private SchedulerlessNode _b = null!;
    private string _connectionString = "";

    public async Task InitializeAsync()
    {
        await Task.WhenAll(_ldap.InitializeAsync(), _smtp.InitializeAsync());
        _ldap.Modify(DirectoryPeople.Ldif(_run, People).ToString(), add: true);
        _connectionString = postgres.ConnectionString("dirgap_" + Guid.NewGuid().ToString("N")[..8]);
        var settings = SchedulerlessNode.DirectoryEnrollmentSettings(_smtp, _ldap, _connectionString);
        _a = new SchedulerlessNode(settings);
        _b = new SchedulerlessNode(settings);
        await _a.InitializeAsync();
        await _b.InitializeAsync();
    }

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
        await _smtp.DisposeAsync();
        await _ldap.DisposeAsync();
    }

    [Fact]
    public async Task An_invitation_still_committing_when_its_run_lost_the_lock_is_not_sent_a_second_time_by_the_next_run()
    {
        await using var db = new NpgsqlConnection(_connectionString);
        await db.OpenAsync();
        await using var holder = new NpgsqlConnection(_connectionString);
        await holder.OpenAsync();
        // Token inserts wait (SHARE blocks INSERT, not SELECT), so node a's first invitation stops short of its commit, after
        // the run's last look at its lock.
        await using var holding = await holder.BeginTransactionAsync();
        await using (var hold = new NpgsqlCommand("LOCK TABLE \"EnrollmentTokens\" IN SHARE MODE", holder, holding))
            await hold.ExecuteNonQueryAsync();

        var onA = _a.Admin.PostAsJsonAsync("/api/v1/directory/enrollment-runs", new { dryRun = false });
        await WaitForTokenInsertsAsync(db, 1, onA);
        await DirectoryEnrollmentStopTests.TerminateRunLockSessionAsync(db);
        // Node b takes the free lock, reads who was invited while node a's invitation has not committed, and invites.
        var onB = _b.Admin.PostAsJsonAsync("/api/v1/directory/enrollment-runs", new { dryRun = false });
        await WaitForTokenInsertsAsync(db, 2, onB);
        await holding.RollbackAsync();

        // Node a stops (its lock is lost: 409); node b's run finishes.
        await Http.AssertProblem(await onA, HttpStatusCode.Conflict);
        await Http.EnsureStatus(await onB, HttpStatusCode.OK);

        // Every message the two nodes queued arrives; each person received exactly one.
        var queued = await InvitationsQueuedAsync(db);
        await _smtp.WaitForAsync(all => all.Count(m => m.To.ToString().Contains(_run, StringComparison.Ordinal)) >= queued, seconds: 60);
        for (var i = 0; i < People; i++)
            Assert.True(_smtp.MessagesTo(DirectoryPeople.Mail(_run, i)).Count == 1,
                $"{DirectoryPeople.Mail(_run, i)} received {_smtp.MessagesTo(DirectoryPeople.Mail(_run, i)).Count} invitations");
        // And the two runs' reports together count each invitation once.
        var runs = (await _b.Admin.GetFromJsonAsync<JsonElement[]>("/api/v1/directory/enrollment-runs", Http.Json))!;
        Assert.Equal(2, runs.Length);
        Assert.Equal(People, runs.Sum(r => r.GetProperty("invited").GetInt32()));
    }

    /// <summary>Until <paramref name="count"/> sessions wait to write tokens (held back by the test's SHARE lock), failing if
    /// <paramref name="run"/> ended first. Only those: the nodes' workers may wait briefly for other locks (their advisory locks).</summary>
    private static async Task WaitForTokenInsertsAsync(NpgsqlConnection db, int count, Task<HttpResponseMessage> run)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            await using var waiting = new NpgsqlCommand("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '\"EnrollmentTokens\"'::regclass " +
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())", db);
            if (Convert.ToInt64(await waiting.ExecuteScalarAsync(), CultureInfo.InvariantCulture) >= count) return;
            if (run.IsCompleted)
                Assert.Fail($"the run ended before {count} sessions waited: {(int)(await run).StatusCode} {await (await run).Content.ReadAsStringAsync()}");
            Assert.True(DateTime.UtcNow < deadline, $"fewer than {count} sessions waited to write tokens");
            await Task.Delay(20);
        }
    }

    private async Task<long> InvitationsQueuedAsync(NpgsqlConnection db)
    {
        await using var count = new NpgsqlCommand("SELECT count(*) FROM \"OutboundMessages\" WHERE \"Kind\" = 'invitation' AND \"Recipient\" LIKE @pattern", db);
        count.Parameters.AddWithValue("pattern", $"%.{_run}@example.com");
        return Convert.ToInt64(await count.ExecuteScalarAsync(), CultureInfo.InvariantCulture);
    }
}
