using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;

namespace CertPortal;

/// <summary>Turns what escaped a handler into problem+json. A body the framework could not read
/// (bad JSON, too large) is the client's fault: 4xx with the reason. Anything else is our bug: a
/// logged 500 that says nothing about internals.</summary>
public sealed class ProblemExceptionHandler(IProblemDetailsService problems, ILogger<ProblemExceptionHandler> logger) : IExceptionHandler
{
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
        else
        {
            logger.LogError(exception, "Unhandled exception on {Method} {Path}", httpContext.Request.Method, httpContext.Request.Path);
            problem = new ProblemDetails { Status = 500, Title = "An unexpected error occurred.", Detail = "The error has been logged." };
        }
        httpContext.Response.StatusCode = problem.Status!.Value;
        return await problems.TryWriteAsync(new ProblemDetailsContext { HttpContext = httpContext, ProblemDetails = problem, Exception = exception });
    }
}
