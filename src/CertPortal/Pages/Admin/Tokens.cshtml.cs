using CertPortal.Auditing;
using CertPortal.Enrollment;
using CertPortal.Mail;
using CertPortal.Security;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace CertPortal.Pages.Admin;

[Authorize(Policy = Policies.Audit)]
public sealed class TokensModel(EnrollmentTokens tokens, Invitations invitations, MailOptions mail, CertPortalOptions options) : PageModel
{
    [BindProperty] public string? Email { get; set; }
    [BindProperty] public string? DisplayName { get; set; }
    [BindProperty] public string Profile { get; set; } = "dual";
    [BindProperty] public int ValidHours { get; set; }
    /// <summary>Mail the link to the person (an invitation) instead of showing it here.</summary>
    [BindProperty] public bool Send { get; set; }
    [BindProperty] public bool ShowLink { get; set; }
    public bool MailEnabled => mail.Enabled;
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
        var request = new CreateTokenRequest(Email, DisplayName, Profile, ValidHours, Send, ShowLink);
        var outcome = Send ? await invitations.InviteAsync(request, AuditLog.ActorOf(User), ct) : await tokens.CreateAsync(request, AuditLog.ActorOf(User), ct);
        if (outcome.Failure is { } f) Error = InFormWords(f);
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

    /// <summary>The API's messages name its JSON fields; the form has labels.</summary>
    private string InFormWords(Failure f) => f.Title switch
    {
        "Invalid validHours." => $"\"Valid for\" must be between 1 and {options.Issuance.MaxTokenValidHours} hours.",
        "Invalid email." when string.IsNullOrWhiteSpace(Email) => "Enter the person's e-mail address.",
        "Invalid displayName." => $"The display name must be at most {EnrollmentTokens.MaxDisplayNameLength} characters, without control characters.",
        "Invalid profile." => "Choose what the certificate is for.",
        _ => f.Detail,
    };

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
