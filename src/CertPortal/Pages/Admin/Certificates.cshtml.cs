using CertPortal.Data;
using CertPortal.Revocation;
using CertPortal.Security;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace CertPortal.Pages.Admin;

[Authorize(Policy = Policies.Audit)]
public sealed class CertificatesModel(CertPortalDbContext db, TimeProvider time) : PageModel
{
    public const int PageSize = 25;
    public CertificatePage? Results { get; private set; }
    public string? Error { get; private set; }
    public string? Email { get; private set; }
    public string? Serial { get; private set; }
    public string? Status { get; private set; }

    public async Task OnGetAsync(string? email, string? serial, string? status, int? p, CancellationToken ct)
    {
        (Email, Serial, Status) = (email, serial, status);
        var outcome = await CertificatesApi.SearchAsync(db, time.GetUtcNow(), email, serial, status, p, PageSize, ct);
        if (outcome.Failure is { } f) Error = f.Detail; else Results = outcome.Value;
    }

    public string PageLink(int page) =>
        $"/admin/certificates?email={Uri.EscapeDataString(Email ?? "")}&serial={Uri.EscapeDataString(Serial ?? "")}&status={Uri.EscapeDataString(Status ?? "")}&p={page}";
}
