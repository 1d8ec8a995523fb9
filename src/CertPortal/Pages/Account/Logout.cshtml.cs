using CertPortal.Auditing;
using CertPortal.Security;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace CertPortal.Pages.Account;

public sealed class LogoutModel(Accounts accounts) : PageModel
{
    public IActionResult OnGet() => Page();

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        // Ends the session on the server too (every copy of the cookie), not only in this browser.
        if (User.Identity?.IsAuthenticated == true && Security.Accounts.IdOf(User) is { } id)
            await accounts.EndSessionsAsync(id, AuditLog.ActorOf(User), ct);
        await HttpContext.SignOutAsync(CookieAuthenticationDefaults.AuthenticationScheme);
        return LocalRedirect("/");
    }
}
