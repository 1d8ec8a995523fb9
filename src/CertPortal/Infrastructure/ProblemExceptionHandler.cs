using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;

namespace CertPortal;

/// <summary>Turns what escaped a handler into problem+json. A body the framework could not read
/// (bad JSON, too large) is the client's fault: 4xx with the reason. Anything else is our bug: a
/// logged 500 that says nothing about internals, except while the service is stopping: then what failed was most
/// likely torn down under a request that outlived the host's shutdown timeout (the CA's signing threads, the database
/// pools), and the client is told to retry (503 with Retry-After): an enrollment repeated with the same token and CSR
/// collects a certificate committed before the stop, and nothing was committed for one that failed before it.</summary>
public sealed class ProblemExceptionHandler(IProblemDetailsService problems, IHostApplicationLifetime lifetime,
    ILogger<ProblemExceptionHandler> logger) : IExceptionHandler
{
    /// <summary>Seconds a client is asked to wait before it retries a request refused while the service stopped.</summary>
    public const int RetryAfterStopSeconds = 5;

    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        if (!Pages.WebUi.IsApiRequest(httpContext))
        {
            // Browser pages get the HTML error page (UseExceptionHandler re-executes /error); the bug is still logged.
            if (exception is not BadHttpRequestException)
                logger.LogError(exception, "Unhandled exception on {Method} {Path}", httpContext.Request.Method, httpContext.Request.Path);
            return false;
        }
        ProblemDetails problem;
        if (exception is BadHttpRequestException bad)
        {
            var status = bad.StatusCode is >= 400 and < 500 ? bad.StatusCode : 400;
            var reason = bad.InnerException is System.Text.Json.JsonException json ? $" {json.Message}" : "";
            problem = new ProblemDetails
            {
                Status = status,
                Title = status == 413 ? "The request body is too large." : "The request body could not be read.",
                Detail = bad.Message + reason,
            };
        }
        else if (lifetime.ApplicationStopping.IsCancellationRequested)
        {
            logger.LogWarning("{Method} {Path} failed while the service was stopping ({Exception}); answered 503",
                httpContext.Request.Method, httpContext.Request.Path, exception.GetType().Name);
            problem = new ProblemDetails
            {
                Status = StatusCodes.Status503ServiceUnavailable,
                Title = "The service is shutting down.",
                Detail = "Retry the request. An enrollment repeated with the same token and CSR collects a certificate issued before the stop.",
            };
            httpContext.Response.Headers.RetryAfter = RetryAfterStopSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        else
        {
            logger.LogError(exception, "Unhandled exception on {Method} {Path}", httpContext.Request.Method, httpContext.Request.Path);
            problem = new ProblemDetails { Status = 500, Title = "An unexpected error occurred.", Detail = "The error has been logged." };
        }
        httpContext.Response.StatusCode = problem.Status!.Value;
        return await problems.TryWriteAsync(new ProblemDetailsContext { HttpContext = httpContext, ProblemDetails = problem, Exception = exception });
    }
}
