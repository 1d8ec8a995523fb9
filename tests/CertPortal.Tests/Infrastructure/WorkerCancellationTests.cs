using System.Collections.Concurrent;
using System.Data.Common;
using CertPortal.Data;
using CertPortal.Gal;
using CertPortal.Tests.Gal;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging.Abstractions;

namespace CertPortal.Tests.Infrastructure;

/// <summary>A worker's pass ended by a cancellation the worker did not ask for (a driver's or library's timeout, a deadline
/// of the pass's own) is a failed pass like any other: logged, and tried again at the next poll. Before, the loops let such a
/// cancellation out of ExecuteAsync, and .NET's host took the worker for a failed one and stopped the whole service
/// (BackgroundServiceExceptionBehavior.StopHost): one slow query could take a node down.</summary>
public sealed class WorkerCancellationTests(WorkerCancellationTests.CancellingDatabaseApp app) : IClassFixture<WorkerCancellationTests.CancellingDatabaseApp>
{
    /// <summary>The service publishing to slapd, its directory outbox and look-up cache polling every 200 ms, and a switch that
    /// makes every database command end in an OperationCanceledException no token of the service asked for.</summary>
    public sealed class CancellingDatabaseApp : DirectoryApp
    {
        public ConcurrentQueue<string> Logs { get; } = new();
        public CancelledCommands Database { get; } = new();

        protected override IDictionary<string, string?> Settings
        {
            get
            {
                var settings = base.Settings;
                settings["Lookup:PollInterval"] = "00:00:00.200";
                return settings;
            }
        }

        protected override void ConfigureServices(IServiceCollection services)
        {
            CapturingLoggerProvider.AddTo(services, Logs);
            services.ConfigureDbContext<SqliteCertPortalDbContext>(o => o.AddInterceptors(Database));
        }
    }

    public sealed class CancelledCommands : DbCommandInterceptor
    {
        private volatile bool _armed;
        public bool Armed { get => _armed; set => _armed = value; }

        private T Check<T>(T result) => Armed ? throw new OperationCanceledException("simulated: the driver gave up on the command") : result;

        public override ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData,
            InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default) => ValueTask.FromResult(Check(result));
        public override ValueTask<InterceptionResult<int>> NonQueryExecutingAsync(DbCommand command, CommandEventData eventData,
            InterceptionResult<int> result, CancellationToken cancellationToken = default) => ValueTask.FromResult(Check(result));
        public override ValueTask<InterceptionResult<object>> ScalarExecutingAsync(DbCommand command, CommandEventData eventData,
            InterceptionResult<object> result, CancellationToken cancellationToken = default) => ValueTask.FromResult(Check(result));
        public override InterceptionResult<DbDataReader> ReaderExecuting(DbCommand command, CommandEventData eventData,
            InterceptionResult<DbDataReader> result) => Check(result);
        public override InterceptionResult<int> NonQueryExecuting(DbCommand command, CommandEventData eventData,
            InterceptionResult<int> result) => Check(result);
        public override InterceptionResult<object> ScalarExecuting(DbCommand command, CommandEventData eventData,
            InterceptionResult<object> result) => Check(result);
    }

    [Fact]
    public async Task Workers_whose_database_commands_are_cancelled_under_them_log_the_failed_passes_and_poll_on()
    {
        var lifetime = app.Service<IHostApplicationLifetime>();
        await Task.Delay(300); // the workers in their loops
        app.Database.Armed = true;
        try
        {
            // Several failed passes of each: the outbox's (on PollTimer.RunAsync) and the look-up cache's (a loop of its own).
            await Eventually.TrueAsync(
                () => Failures("Directory outbox pass failed") >= 3 && Failures("look-up cache failed") >= 3 || lifetime.ApplicationStopping.IsCancellationRequested,
                () => "the workers' passes never met the cancelled commands");
        }
        finally
        {
            app.Database.Armed = false;
        }
        Assert.False(lifetime.ApplicationStopping.IsCancellationRequested, "a cancelled command stopped the host: " +
            string.Join(" | ", app.Logs.Where(l => l.Contains("Microsoft.Extensions.Hosting", StringComparison.Ordinal))));
        Assert.DoesNotContain(app.Logs, l => l.Contains("BackgroundService failed", StringComparison.Ordinal));
        foreach (var worker in app.Services.GetServices<IHostedService>().OfType<BackgroundService>().Where(w => w is DirectoryOutbox or RecipientCache))
            Assert.False(worker.ExecuteTask!.IsCompleted, $"{worker.GetType().Name} ended {worker.ExecuteTask.Status}");

        // The outbox polls on: a certificate issued now is published to the directory by its worker.
        var email = $"cancelled.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        await app.IssueAsync(email, "encryption");
        await Eventually.TrueAsync(() => app.PublishedCertificates(email).Count == 1, () => "the outbox worker no longer publishes");
    }

    private int Failures(string message) =>
        app.Logs.Count(l => l.Contains(message, StringComparison.Ordinal) && l.Contains("simulated: the driver gave up", StringComparison.Ordinal));
}

/// <summary>The loop most workers share, on its own.</summary>
public sealed class PollTimerTests
{
    [Fact]
    public async Task A_pass_cancelled_by_something_else_than_the_stop_is_a_failed_pass_and_the_loop_goes_on_until_the_stop()
    {
        using var stop = new CancellationTokenSource();
        var passes = 0;
        var loop = PollTimer.RunAsync(TimeSpan.FromMilliseconds(20), _ =>
        {
            if (Interlocked.Increment(ref passes) == 3) stop.Cancel();
            throw new TaskCanceledException("an HTTP client's timeout");
        }, NullLogger.Instance, "test", stop.Token);
        await loop.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(loop.IsCompletedSuccessfully);
        Assert.Equal(3, passes);
    }

    [Fact]
    public void Only_a_cancellation_while_the_worker_is_stopping_is_its_stop()
    {
        using var stopping = new CancellationTokenSource();
        Assert.True(PollTimer.FailedPass(new OperationCanceledException(), stopping.Token));
        Assert.True(PollTimer.FailedPass(new InvalidOperationException(), stopping.Token));
        stopping.Cancel();
        Assert.False(PollTimer.FailedPass(new OperationCanceledException(stopping.Token), stopping.Token));
        // Anything else thrown while stopping is still a failure, logged as one.
        Assert.True(PollTimer.FailedPass(new InvalidOperationException(), stopping.Token));
    }
}
