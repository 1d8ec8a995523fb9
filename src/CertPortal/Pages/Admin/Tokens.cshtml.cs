using CertPortal.Auditing;
using CertPortal.Enrollment;
using CertPortal.Security;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace CertPortal.Pages.Admin;

[Authorize(Policy = Policies.Audit)]
public sealed class TokensModel(EnrollmentTokens tokens, CertPortalOptions options) : PageModel
{
    [BindProperty] public string? Email { get; set; }
    [BindProperty] public string? DisplayName { get; set; }
    [BindProperty] public string Profile { get; set; } = "dual";
    [BindProperty] public int ValidHours { get; set; }
    public CreatedToken? Created { get; private set; }
    public string? EnrollmentLink { get; private set; }
    public string? Error { get; private set; }
    public string? Message { get; private set; }
    public IReadOnlyList<TokenView> List { get; private set; } = [];

    public async Task OnGetAsync(CancellationToken ct)
    {
        ValidHours = options.Issuance.DefaultTokenValidHours;
        List = await tokens.ListAsync(null, null, ct);
    }

    public async Task<IActionResult> OnPostCreateAsync(CancellationToken ct)
    {
        if (!User.IsInRole(Roles.Administrator)) return Forbid();
        var outcome = await tokens.CreateAsync(new CreateTokenRequest(Email, DisplayName, Profile, ValidHours), AuditLog.ActorOf(User), ct);
        if (outcome.Failure is { } f) Error = f.Detail;
        else
        {
            // Shown once: the secret is not stored anywhere it could be shown again.
            Created = outcome.Value;
            EnrollmentLink = Created!.EnrollmentUrl;
            Email = DisplayName = null;
        }
        List = await tokens.ListAsync(null, null, ct);
        return Page();
    }

    public async Task<IActionResult> OnPostRevokeAsync(Guid id, CancellationToken ct)
    {
        if (!User.IsInRole(Roles.Administrator)) return Forbid();
        var outcome = await tokens.RevokeAsync(id, AuditLog.ActorOf(User), ct);
        if (outcome.Failure is { } f) Error = f.Detail; else Message = $"Token for {outcome.Value!.Email} revoked.";
        ValidHours = options.Issuance.DefaultTokenValidHours;
        List = await tokens.ListAsync(null, null, ct);
        return Page();
    }
}
