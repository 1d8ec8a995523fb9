using System.Net;
using System.Text.Json;
using CertPortal.Authority;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace CertPortal.Tests.Api;

/// <summary>A request that fails because the service is stopping under it (here: the CA's signing threads are gone, as
/// when a request outlives the host's shutdown timeout) is told to retry, 503 with Retry-After, not "our bug" 500; the same
/// failure while the service runs is still a 500.</summary>
public sealed class StoppingServiceTests
{
    [Theory]
    [InlineData(true, HttpStatusCode.ServiceUnavailable)]
    [InlineData(false, HttpStatusCode.InternalServerError)]
    public async Task A_failure_while_stopping_is_a_503_with_retry_after(bool stopping, HttpStatusCode expected)
    {
        using var lifetime = new Lifetime();
        if (stopping) lifetime.Stop();
        await using var services = new ServiceCollection().AddLogging().AddProblemDetails().BuildServiceProvider();
        var handler = new ProblemExceptionHandler(services.GetRequiredService<Microsoft.AspNetCore.Http.IProblemDetailsService>(),
            lifetime, services.GetRequiredService<Microsoft.Extensions.Logging.ILogger<ProblemExceptionHandler>>());

        // What an RSA issuance meets after the issuer's signing threads were disposed.
        var threads = new SigningThreads(1);
        threads.Dispose();
        var failure = Assert.ThrowsAny<InvalidOperationException>(() => { _ = threads.Run(() => 1); });

        var context = new DefaultHttpContext { RequestServices = services };
        context.Request.Method = "POST";
        context.Request.Path = "/api/v1/enrollments";
        context.Response.Body = new MemoryStream();
        Assert.True(await handler.TryHandleAsync(context, failure, CancellationToken.None));

        Assert.Equal((int)expected, context.Response.StatusCode);
        context.Response.Body.Position = 0;
        using var problem = await JsonDocument.ParseAsync(context.Response.Body);
        Assert.Equal((int)expected, problem.RootElement.GetProperty("status").GetInt32());
        if (stopping)
        {
            Assert.Equal(ProblemExceptionHandler.RetryAfterStopSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
                context.Response.Headers.RetryAfter.ToString());
            Assert.Equal("The service is shutting down.", problem.RootElement.GetProperty("title").GetString());
        }
        else
        {
            Assert.Equal(0, context.Response.Headers.RetryAfter.Count);
            Assert.Equal("An unexpected error occurred.", problem.RootElement.GetProperty("title").GetString());
        }
    }

    private sealed class Lifetime : IHostApplicationLifetime, IDisposable
    {
        private readonly CancellationTokenSource _stopping = new();
        public CancellationToken ApplicationStarted => CancellationToken.None;
        public CancellationToken ApplicationStopping => _stopping.Token;
        public CancellationToken ApplicationStopped => CancellationToken.None;
        public void Stop() => _stopping.Cancel();
        public void StopApplication() => Stop();
        public void Dispose() => _stopping.Dispose();
    }
}
