using System.ComponentModel.DataAnnotations;
using CertPortal.Auditing;
using CertPortal.Data;
using CertPortal.Security;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace CertPortal.Pages.Account;

public sealed class LoginModel(Accounts accounts, CertPortalDbContext db, TimeProvider time, ILogger<LoginModel> logger) : PageModel
{
    [BindProperty, Required(ErrorMessage = "Enter your account name.")] public string? Name { get; set; }
    [BindProperty, Required(ErrorMessage = "Enter your password.")] public string? Password { get; set; }
    public string? Error { get; private set; }

    public void OnGet() { }

    public async Task<IActionResult> OnPostAsync(string? returnUrl, CancellationToken ct)
    {
        if (!ModelState.IsValid) return Page();
        var account = await accounts.SignInAsync(Name, Password, ct);
        if (account is null)
        {
            // The name is logged (to spot guessing), never the password.
            logger.LogWarning("Failed console sign-in for {Name} from {Address}", Mailbox.Sanitize(Name ?? ""), HttpContext.Connection.RemoteIpAddress);
            AuditLog.Record(db, time.GetUtcNow(), Mailbox.Sanitize(Name ?? ""), "account.sign-in-failed", "console");
            await db.SaveChangesAsync(ct);
            Error = "The account name or password is not right.";
            return Page();
        }
        await HttpContext.SignInAsync(CookieAuthenticationDefaults.AuthenticationScheme,
            Accounts.PrincipalFor(account, CookieAuthenticationDefaults.AuthenticationScheme));
        return LocalRedirect(Url.IsLocalUrl(returnUrl) ? returnUrl! : account.Role == Roles.RecoveryAgent ? "/admin/recoveries" : "/admin");
    }
}
