using System.ComponentModel.DataAnnotations;
using CertPortal.Auditing;
using CertPortal.Data;
using CertPortal.Security;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Pages;

/// <summary>First run: creates the first administrator who can sign in, guarded by the admin API key,
/// and only while no administrator with a password exists.</summary>
public sealed class SetupModel(Accounts accounts, AdminApiKey adminKey, CertPortalDbContext db) : PageModel
{
    [BindProperty, Required(ErrorMessage = "Enter the admin API key.")] public string? ApiKey { get; set; }
    [BindProperty, Required(ErrorMessage = "Choose an account name.")] public string? Name { get; set; }
    [BindProperty, Required(ErrorMessage = "Choose a password.")] public string? Password { get; set; }
    public string? Error { get; private set; }
    public bool Closed { get; private set; }

    public async Task OnGetAsync(CancellationToken ct) => Closed = await HasAdministratorAsync(ct);

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        if (Closed = await HasAdministratorAsync(ct)) return Page();
        if (!ModelState.IsValid) return Page();
        if (!adminKey.Matches(ApiKey!.Trim()))
        {
            Error = "That is not the admin API key. It is in the file admin-api-key in the service's data directory, unless your operator configured it elsewhere.";
            return Page();
        }
        var created = await accounts.CreateAsync(new CreateAccountRequest(Name, Name, Roles.Administrator, Password), AuditActors.Setup, ct);
        if (created.Failure is { } f) { Error = f.Detail; return Page(); }
        return LocalRedirect("/account/login");
    }

    private Task<bool> HasAdministratorAsync(CancellationToken ct) => HasAdministratorAsync(db, ct);

    public static Task<bool> HasAdministratorAsync(CertPortalDbContext db, CancellationToken ct) =>
        db.Accounts.AnyAsync(a => a.Role == Roles.Administrator && a.PasswordHash != null && a.DisabledAt == null, ct);
}
