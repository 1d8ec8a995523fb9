using System.ComponentModel.DataAnnotations;
using CertPortal.Auditing;
using CertPortal.Data;
using CertPortal.Security;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace CertPortal.Pages.Account;

public sealed class LoginModel(Accounts accounts, SignInThrottle throttle, SignInNames names, CertPortalDbContext db, TimeProvider time,
    ILogger<LoginModel> logger) : PageModel
{
    [BindProperty, Required(ErrorMessage = "Enter your account name.")] public string? Name { get; set; }
    [BindProperty, Required(ErrorMessage = "Enter your password.")] public string? Password { get; set; }
    public string? Error { get; private set; }
    /// <summary>Once an administrator exists /setup is closed, so the page stops pointing to it.</summary>
    public bool SetupDone { get; private set; }

    public async Task OnGetAsync(CancellationToken ct) => SetupDone = await SetupModel.HasAdministratorAsync(db, ct);

    public async Task<IActionResult> OnPostAsync(string? returnUrl, CancellationToken ct)
    {
        SetupDone = await SetupModel.HasAdministratorAsync(db, ct);
        if (!ModelState.IsValid) return Page();
        var name = Accounts.NormalizeName(Name);
        // The name the attempt is counted, recorded and logged under: the account's own, or for text that names no account
        // (often a password typed into the wrong field) a keyed hash of it, never the text (SignInNames). Both are worked out
        // for every attempt, so the work done does not depend on whether the name exists.
        var unknownAccount = names.UnknownAccountActor(name);
        var named = await accounts.FindByNameAsync(name, ct);
        var key = named?.Name ?? unknownAccount;
        var address = HttpContext.Connection.RemoteIpAddress?.ToString() ?? "unknown";
        await using var attempt = await throttle.TryBeginAsync(key, ct);
        if (attempt is null)
        {
            // Not checked: one attempt per name at a time, so the throttle sees every earlier failure.
            Error = "Another sign-in for this account is under way. Try again in a moment.";
            return Page();
        }
        if (await throttle.IsThrottledAsync(key, ct))
        {
            // Refused without checking the password, so guessing gains nothing; not counted as a failure, so the
            // lock ends when the window passes even while someone keeps trying.
            logger.LogWarning("Console sign-in throttled for {Name} from {Address}", key, address);
            AuditLog.Record(db, time.GetUtcNow(), key, SignInThrottle.ThrottledAction, "console", new { address });
            await db.SaveChangesAsync(ct);
            Error = $"Too many failed sign-ins for this account. Wait {SignInThrottle.Window.TotalMinutes:0} minutes and try again, or ask another administrator.";
            return Page();
        }
        var account = Accounts.CheckPassword(named, Password);
        if (account is null)
        {
            // The account's name or the unknown name's hash is logged (to spot guessing), never what was typed.
            logger.LogWarning("Failed console sign-in for {Name} from {Address}", key, address);
            AuditLog.Record(db, time.GetUtcNow(), key, SignInThrottle.FailedAction, "console", new { address });
            await db.SaveChangesAsync(ct);
            Error = "The account name or password is not right.";
            return Page();
        }
        AuditLog.Record(db, time.GetUtcNow(), key, SignInThrottle.SucceededAction, $"account:{account.Id}", new { address });
        await db.SaveChangesAsync(ct);
        await HttpContext.SignInAsync(CookieAuthenticationDefaults.AuthenticationScheme,
            Accounts.PrincipalFor(account, CookieAuthenticationDefaults.AuthenticationScheme));
        return LocalRedirect(Url.IsLocalUrl(returnUrl) ? returnUrl! : account.Role == Roles.RecoveryAgent ? "/admin/recoveries" : "/admin");
    }
}
