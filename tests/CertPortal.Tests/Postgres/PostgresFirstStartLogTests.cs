using System.Collections.Concurrent;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Postgres;

/// <summary>Every log line of a first start on an empty PostgreSQL database.</summary>
public sealed class LoggedPostgresApp : PostgresApp
{
    public ConcurrentQueue<string> Lines { get; } = new();
    protected override void ConfigureServices(IServiceCollection services) => CapturingLoggerProvider.AddTo(services, Lines);
}

public sealed class PostgresFirstStartLogTests(LoggedPostgresApp app) : IClassFixture<LoggedPostgresApp>
{
    [Fact]
    public async Task A_first_start_on_an_empty_database_logs_no_error()
    {
        // The start created the schema (migrations) and the CA; an operator reading the log of that start must not
        // find a failure in it (EF Core used to log its read of the not yet existing migrations table as "fail").
        Assert.Equal(System.Net.HttpStatusCode.OK, (await app.Client.GetAsync("/healthz")).StatusCode);
        Assert.Contains(app.Lines, l => l.Contains("CertPortal ready", StringComparison.Ordinal));
        var failures = app.Lines.Where(l => l.StartsWith("Error ", StringComparison.Ordinal) || l.StartsWith("Critical ", StringComparison.Ordinal)).ToList();
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }
}
