using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace CertPortal.Tests.Infrastructure;

/// <summary>Captures every log message (formatted, with its exception) so tests can assert no secret is logged.</summary>
public sealed class CapturingLoggerProvider(ConcurrentQueue<string> lines) : ILoggerProvider
{
    /// <summary>Adds the provider and lowers every category to Trace.</summary>
    public static void AddTo(IServiceCollection services, ConcurrentQueue<string> lines)
    {
        services.AddSingleton<ILoggerProvider>(new CapturingLoggerProvider(lines));
        services.Configure<LoggerFilterOptions>(o => { o.MinLevel = LogLevel.Trace; o.Rules.Clear(); });
    }

    public ILogger CreateLogger(string categoryName) => new Logger(lines, categoryName);
    public void Dispose() { }

    private sealed class Logger(ConcurrentQueue<string> lines, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)} {exception}");
    }
}
