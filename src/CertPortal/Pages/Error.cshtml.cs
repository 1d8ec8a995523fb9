using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace CertPortal.Pages;

/// <summary>The HTML error page for browser requests (re-executed by the status-code and exception middleware
/// with the original method, hence POST, PUT, PATCH and DELETE too and no antiforgery check: it changes nothing).</summary>
[IgnoreAntiforgeryToken]
public sealed class ErrorModel(IProblemDetailsService problems) : PageModel
{
    public int Status { get; private set; }
    public string Title { get; private set; } = "";
    public string Explanation { get; private set; } = "";

    public Task<IActionResult> OnGetAsync() => DescribeAsync();
    public Task<IActionResult> OnPostAsync() => DescribeAsync();
    // The API's PUT, PATCH and DELETE routes re-execute here too; without these the page would render with no status.
    public Task<IActionResult> OnPutAsync() => DescribeAsync();
    public Task<IActionResult> OnPatchAsync() => DescribeAsync();
    public Task<IActionResult> OnDeleteAsync() => DescribeAsync();

    private async Task<IActionResult> DescribeAsync()
    {
        // Opened directly (not re-executed), the page describes "not found".
        var statusCodePage = HttpContext.Features.Get<IStatusCodeReExecuteFeature>();
        var reExecuted = statusCodePage is not null || HttpContext.Features.Get<IExceptionHandlerPathFeature>() is not null;
        Status = reExecuted && Response.StatusCode >= 400 ? Response.StatusCode : StatusCodes.Status404NotFound;
        Response.StatusCode = Status;
        if (reExecuted && WebUi.IsApiRequest(HttpContext))
        {
            // The API's callers are programs: an RFC 7807 body with the standard title for the status.
            await problems.WriteAsync(new ProblemDetailsContext { HttpContext = HttpContext, ProblemDetails = new ProblemDetails { Status = Status } });
            return new EmptyResult();
        }
        (Title, Explanation) = Status switch
        {
            404 => ("Page not found", "There is nothing at this address. Check the link, or start again from the start page."),
            400 => ("The request could not be used",
                "The form may have been open too long or been sent twice, or the address is incomplete. Go back, reload the page and try again."),
            403 => ("Not allowed", "Your account may not do this. Ask an administrator if you need it."),
            405 => ("Not possible here", "This page cannot be used that way. Go back and use the page's own buttons."),
            413 => ("Too large", "What you sent is too large."),
            503 => ("The service is restarting", "Try again in a few seconds. Nothing you sent was lost: an enrollment you repeat gives you your digital ID."),
            _ when Status >= 500 => ("Something went wrong on our side", "The error has been logged. Try again in a moment; if it keeps happening, tell your administrator."),
            _ => ("The request could not be completed", "Go back and try again."),
        };
        return Page();
    }
}
