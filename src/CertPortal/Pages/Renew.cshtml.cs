using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Renewal;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Pages;

/// <summary>"Renew your digital ID": the person opens their current .p12 in this page (wwwroot/js/renew-page.js); the
/// browser proves the old key by signing the request for a new one, and packs the new ID. The server sees neither key.
/// The link in expiry reminders names the certificate (<c>?serial=</c>), which only lets the page say which one.</summary>
public sealed class RenewModel(CertPortalDbContext db, RenewalOptions renewal, CertPortalOptions options, TimeProvider time) : PageModel
{
    public bool NeedsHttps { get; private set; }
    public string SecureLink { get; private set; } = "";
    public bool Enabled => renewal.Enabled;
    public IssuedCertificate? Named { get; private set; }
    public DateTimeOffset Now { get; private set; }
    public DateTimeOffset? OpensAt => Named is null ? null : Named.NotAfter - renewal.OpensBeforeExpiry;

    public async Task OnGetAsync(string? serial, CancellationToken ct)
    {
        Now = time.GetUtcNow();
        NeedsHttps = !Request.IsHttps && !EnrollModel.IsLoopbackHost(Request.Host.Host);
        if (NeedsHttps)
        {
            SecureLink = RenewalService.LinkFor(options, serial);
            return;
        }
        if (Authority.SerialNumber.TryNormalize(serial, out var normalized))
            Named = await db.Certificates.AsNoTracking().FirstOrDefaultAsync(c => c.SerialNumber == normalized, ct);
    }

    public static string Purpose(IssuedCertificate c) => Names.Of(c.Profile);
}
