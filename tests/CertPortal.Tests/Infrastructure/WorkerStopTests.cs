using System.Collections.Concurrent;
using CertPortal.Tests.Gal;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace CertPortal.Tests.Infrastructure;

/// <summary>The service with every background worker running: mail to a real SMTP server, the directory outbox and scheduled
/// directory enrollment against slapd, superseding renewed certificates; every log line captured.</summary>
public sealed class AllWorkersApp : DirectoryEnrollmentApp
{
    public ConcurrentQueue<string> Logs { get; } = new();

    protected override string? Group => null;

    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["DirectoryEnrollment:Interval"] = "1.00:00:00";
            settings["Renewal:SupersedeAfter"] = "1.00:00:00";
            return settings;
        }
    }

    protected override void ConfigureServices(IServiceCollection services) => CapturingLoggerProvider.AddTo(services, Logs);
}

/// <summary>A background worker stopped on its own (its StopAsync, not the host's shutdown) ends quietly, and the host serves
/// on. .NET's host takes a worker whose task ends cancelled or faulted, outside its own shutdown, for a failed worker, and by
/// default (BackgroundServiceExceptionBehavior.StopHost) stops the whole application for it: the OperationCanceledException of
/// a poll timer's wait, or of a pass cut off, must not escape ExecuteAsync. One service for all cases (one each took two
/// minutes): a worker that fails here stops the host, and the cases after it then fail on that too.</summary>
public sealed class WorkerStopTests(AllWorkersApp app) : IClassFixture<AllWorkersApp>
{
    private static readonly string[] Names =
    [
        "MailOutbox", "DirectoryOutbox", "DirectoryEnrollmentWorker", "SupersedeWorker", "RecoveryExpiryWorker", "RecipientCache",
        "OcspResponder", "CrlPublisher", "GroupCommitWriter",
    ];

    public static TheoryData<string> Workers => new(Names);

    [Fact]
    public void The_theory_below_covers_every_background_worker()
    {
        var running = app.Services.GetServices<IHostedService>().OfType<BackgroundService>().Select(w => w.GetType().Name).Order();
        Assert.Equal(Names.Order(), running);
    }

    [Theory]
    [MemberData(nameof(Workers))]
    public async Task A_worker_stopped_on_its_own_ends_quietly_and_the_host_serves_on(string name)
    {
        var worker = app.Services.GetServices<IHostedService>().OfType<BackgroundService>().Single(w => w.GetType().Name == name);
        var lifetime = app.Service<IHostApplicationLifetime>();
        // Its first pass under way or done, so that the stop finds it in its loop.
        await Task.Delay(300);

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await worker.StopAsync(timeout.Token);
        var task = worker.ExecuteTask!;
        Assert.True(task.IsCompletedSuccessfully, $"{name} ended {task.Status}: {task.Exception?.InnerException}");
        // The host's watch on the worker's task runs as that task ends.
        await Task.Delay(500);
        Assert.False(lifetime.ApplicationStopping.IsCancellationRequested, $"stopping {name} stopped the host: " +
            string.Join(" | ", app.Logs.Where(l => l.Contains("Microsoft.Extensions.Hosting", StringComparison.Ordinal))));
        Assert.DoesNotContain(app.Logs, l => l.Contains("BackgroundService failed", StringComparison.Ordinal));
        var health = await app.Client.GetAsync("/healthz");
        Assert.Equal(System.Net.HttpStatusCode.OK, health.StatusCode);
    }
}
