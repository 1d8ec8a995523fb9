using System.Data.Common;
using CertPortal.Data;
using CertPortal.Gal;
using CertPortal.Tests.Gal;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Mail;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace CertPortal.Tests.Cluster;

/// <summary>A node on PostgreSQL whose scheduler is off: the test starts each scheduled run itself (RunIfDueAsync), so no
/// minute tick races it.</summary>
public sealed class SchedulerlessNode(Dictionary<string, string?> settings) : CertPortalApp
{
    protected override IDictionary<string, string?> Settings => settings;

    /// <summary>A node of directory-driven enrollment (a day's Interval) on <paramref name="connectionString"/>, reading
    /// <paramref name="ldap"/> and mailing through <paramref name="smtp"/>.</summary>
    public static Dictionary<string, string?> DirectoryEnrollmentSettings(SmtpServer smtp, Slapd ldap, string connectionString)
    {
        var settings = new Dictionary<string, string?>(MailApp.MailSettings(smtp.Port));
        foreach (var (k, v) in DirectoryApp.DirectorySettings(ldap)) settings[k] = v;
        settings["Database:Provider"] = "Postgres";
        settings["Database:ConnectionString"] = connectionString;
        settings["DirectoryEnrollment:Enabled"] = "true";
        settings["DirectoryEnrollment:Interval"] = "1.00:00:00";
        return settings;
    }

    protected override void ConfigureServices(IServiceCollection services) =>
        services.Remove(services.Single(d => d.ImplementationType == typeof(DirectoryEnrollmentWorker)));
}

/// <summary>A scheduled run of 500 people that stops half-way: at shutdown, or because its run lock's database session was
/// terminated (pg_terminate_backend, as a PostgreSQL restart or a cut connection would end it). The run is recorded with
/// an error saying why and the invitations it made, the next scheduled run starts at once (not a period later) and invites
/// exactly the rest, and nobody holds two invitations. Before: a cancelled run was recorded as finished without an error, so
/// the rest waited a whole Interval; a run that lost its lock went on inviting all 500 while another node could take the lock
/// and run too; a stopped run was recorded as having invited nobody.</summary>
public sealed class DirectoryEnrollmentStopTests(PostgresServer postgres) : IClassFixture<PostgresServer>, IAsyncLifetime
{
    private const int People = 500;
    private readonly Slapd _ldap = new();
    private readonly SmtpServer _smtp = new();
    private readonly string _run = Guid.NewGuid().ToString("N")[..6];
    private SchedulerlessNode _node = null!;
    private string _connectionString = "";

    public async Task InitializeAsync()
    {
        await Task.WhenAll(_ldap.InitializeAsync(), _smtp.InitializeAsync());
        _ldap.Modify(DirectoryPeople.Ldif(_run, People).ToString(), add: true);
        _connectionString = postgres.ConnectionString("dirstop_" + Guid.NewGuid().ToString("N")[..8]);
        _node = new SchedulerlessNode(SchedulerlessNode.DirectoryEnrollmentSettings(_smtp, _ldap, _connectionString));
        await _node.InitializeAsync();
    }

    public async Task DisposeAsync()
    {
        await _node.DisposeAsync();
        await _smtp.DisposeAsync();
        await _ldap.DisposeAsync();
    }

    [Fact]
    public async Task A_run_stopped_by_shutdown_is_recorded_unfinished_and_the_next_poll_invites_the_rest()
    {
        await using var db = new NpgsqlConnection(_connectionString);
        using var shutdown = new CancellationTokenSource();
        var stopping = RunIfDueAsync(shutdown.Token);
        await WaitForTokensAsync(db, stopping);
        await shutdown.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => stopping);

        var stopped = Assert.Single(await RunsAsync());
        Assert.NotNull(stopped.FinishedAt);
        Assert.Equal(DirectoryEnrollment.ShutdownError, stopped.Error);
        // Its report counts the invitations it committed before it stopped.
        var invitedBeforeShutdown = await DirectoryEnrollmentNodeKillTests.CountTokensAsync(db, _run);
        Assert.Equal(invitedBeforeShutdown, stopped.Invited);

        // The next poll, a minute later and well within the day's Interval, carries on.
        var rest = await RunIfDueAsync(CancellationToken.None);
        Assert.NotNull(rest);
        Assert.Equal(People, rest.RecentlyInvited + rest.Invited);
        Assert.InRange(rest.Invited, 1, People - 30);
        Assert.Equal(People, await ScheduledDirectoryEnrollmentTests.TokensPerMailboxAsync(db, _run, max: 1));
        Assert.Null((await RunsAsync())[0].Error);
    }

    /// <summary>Stopped while reading who is enrolled (the first thing it asks the database after the directory): by a
    /// shutdown, or by its database session being terminated under it.</summary>
    [Theory]
    [InlineData("shutdown", DirectoryEnrollment.ShutdownError)]
    [InlineData("terminated", DirectoryEnrollment.DatabaseError)]
    public async Task A_run_stopped_while_reading_is_recorded_unfinished_and_the_next_poll_invites_everyone(string cause, string error)
    {
        using var shutdown = new CancellationTokenSource();
        var stopper = new StopWhenReadingCertificates(cause == "shutdown" ? shutdown : null, _connectionString);
        await using (var scope = _node.Services.CreateAsyncScope())
        await using (var db = new NpgsqlCertPortalDbContext(new DbContextOptionsBuilder<NpgsqlCertPortalDbContext>()
                         .UseNpgsql(_connectionString).AddInterceptors(stopper).Options))
        {
            var enrollment = ActivatorUtilities.CreateInstance<DirectoryEnrollment>(scope.ServiceProvider, db);
            var stoppedBy = await Record.ExceptionAsync(() => enrollment.RunIfDueAsync(shutdown.Token));
            Assert.True(stopper.Stopped, "the run did not read the certificates");
            Assert.NotNull(stoppedBy);
        }

        var stopped = Assert.Single(await RunsAsync());
        Assert.NotNull(stopped.FinishedAt);
        Assert.Equal(error, stopped.Error);
        var rest = await RunIfDueAsync(CancellationToken.None);
        Assert.NotNull(rest);
        Assert.Equal(People, rest.Invited);
    }

    [Fact]
    public async Task A_run_stopped_by_a_directory_error_is_retried_at_the_next_poll()
    {
        await _ldap.StopAsync();
        await Assert.ThrowsAsync<DirectoryUnavailableException>(() => RunIfDueAsync(CancellationToken.None));
        var failed = Assert.Single(await RunsAsync());
        Assert.Contains("Cannot connect/bind", failed.Error);
        Assert.DoesNotContain(Slapd.RootPassword, failed.Error);

        await _ldap.StartAsync();
        var rest = await RunIfDueAsync(CancellationToken.None);
        Assert.NotNull(rest);
        Assert.Equal(People, rest.Invited);
    }

    [Fact]
    public async Task A_directory_that_stays_down_is_tried_less_and_less_often()
    {
        await _ldap.StopAsync();
        try
        {
            await Assert.ThrowsAsync<DirectoryUnavailableException>(() => RunIfDueAsync(CancellationToken.None));
            // One failure: the next poll tries again (it may have been a blip)...
            await Assert.ThrowsAsync<DirectoryUnavailableException>(() => RunIfDueAsync(CancellationToken.None));
            // ...two in a row: the next waits a minute, so an outage does not write a run every minute.
            Assert.Null(await RunIfDueAsync(CancellationToken.None));
            Assert.Equal(2, (await RunsAsync()).Count);
        }
        finally
        {
            await _ldap.StartAsync();
        }
    }

    [Fact]
    public async Task A_run_whose_lock_session_is_terminated_stops_inviting_and_the_next_run_invites_the_rest()
    {
        await using var db = new NpgsqlConnection(_connectionString);
        var losing = RunIfDueAsync(CancellationToken.None);
        await WaitForTokensAsync(db, losing);
        await TerminateRunLockSessionAsync(db);
        // The lock is free at once: another node could take it (and would run) from here on.
        await using (var scope = _node.Services.CreateAsyncScope())
        await using (var other = await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>()
                         .TryHoldNamedAsync(DirectoryEnrollment.RunLock, CancellationToken.None))
            Assert.NotNull(other);

        var stoppedBy = await Record.ExceptionAsync(() => losing);
        var invitedByLoser = await DirectoryEnrollmentNodeKillTests.CountTokensAsync(db, _run);
        Assert.True(invitedByLoser < People, $"the run went on to invite all {People} after its lock's session was terminated");
        Assert.NotNull(stoppedBy);
        var stopped = Assert.Single(await RunsAsync());
        Assert.NotNull(stopped.FinishedAt);
        Assert.Equal(DirectoryEnrollment.LockLostError, stopped.Error);
        Assert.Equal(invitedByLoser, stopped.Invited);

        var rest = await RunIfDueAsync(CancellationToken.None);
        Assert.NotNull(rest);
        Assert.Equal(invitedByLoser, rest.RecentlyInvited);
        Assert.Equal(People - invitedByLoser, rest.Invited);
        Assert.Equal(People, await ScheduledDirectoryEnrollmentTests.TokensPerMailboxAsync(db, _run, max: 1));
    }

    /// <summary>Ends the database session holding the run lock (pg_terminate_backend, waiting until it is gone), as a PostgreSQL
    /// restart or a cut connection would; the lock is free from then on. The session is found as PostgreSQL lists its lock:
    /// pg_try_advisory_lock(bigint) of a hashtext (int4) keeps the key's low 32 bits in objid.</summary>
    internal static async Task TerminateRunLockSessionAsync(NpgsqlConnection db)
    {
        await using var terminate = new NpgsqlCommand(
            "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 " +
            "AND objid::bigint = (hashtext('certportal:' || @name)::bigint & 4294967295)", db);
        terminate.Parameters.AddWithValue("name", DirectoryEnrollment.RunLock);
        Assert.Equal(1L, await terminate.ExecuteScalarAsync());
    }

    /// <summary>The moment the run first reads the certificates: a shutdown (<paramref name="shutdown"/> cancelled), or else
    /// the query's own database session terminated by PostgreSQL (pg_terminate_backend, waiting until it is gone).</summary>
    private sealed class StopWhenReadingCertificates(CancellationTokenSource? shutdown, string connectionString) : DbCommandInterceptor
    {
        private int _stopped;
        public bool Stopped => _stopped == 1;

        public override async ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData,
            InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default)
        {
            if (command.CommandText.Contains("FROM \"Certificates\"", StringComparison.Ordinal) && Interlocked.Exchange(ref _stopped, 1) == 0)
            {
                if (shutdown is not null) await shutdown.CancelAsync();
                else
                {
                    await using var admin = new NpgsqlConnection(connectionString);
                    await admin.OpenAsync(CancellationToken.None);
                    await using var terminate = new NpgsqlCommand("SELECT pg_terminate_backend(@pid, 10000)", admin);
                    terminate.Parameters.AddWithValue("pid", ((NpgsqlConnection)command.Connection!).ProcessID);
                    Assert.Equal(true, await terminate.ExecuteScalarAsync(CancellationToken.None));
                }
            }
            return await base.ReaderExecutingAsync(command, eventData, result, cancellationToken);
        }
    }

    private async Task<DirectoryEnrollmentReport?> RunIfDueAsync(CancellationToken ct)
    {
        await using var scope = _node.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<DirectoryEnrollment>().RunIfDueAsync(ct);
    }

    private async Task<IReadOnlyList<DirectoryEnrollmentRunView>> RunsAsync()
    {
        await using var scope = _node.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<DirectoryEnrollment>().ListRunsAsync(CancellationToken.None);
    }

    /// <summary>Until the run has invited 30 of the 500, failing if it ended first.</summary>
    private async Task WaitForTokensAsync(NpgsqlConnection db, Task run)
    {
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (await DirectoryEnrollmentNodeKillTests.CountTokensAsync(db, _run) < 30)
        {
            if (run.IsCompleted) await run; // shows its exception, if any
            Assert.False(run.IsCompleted, "the run ended before it had invited 30 people");
            Assert.True(DateTime.UtcNow < deadline, "the run did not start inviting");
            await Task.Delay(10);
        }
    }
}
