using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Renewal;
using CertPortal.Revocation;
using CertPortal.Security;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Pages.Admin;

[Authorize(Policy = Policies.Audit)]
public sealed class CertificateModel(CertPortalDbContext db, RevocationService revocation, RenewalOptions renewal, TimeProvider time) : PageModel
{
    public CertificateView? Certificate { get; private set; }
    public bool RenewalEnabled => renewal.Enabled;
    /// <summary>The last moment a renewal may be issued in this certificate's chain: its mailbox validation may be relied on that
    /// long (<see cref="RenewalOptions.MailboxValidationReuse"/>), whichever certificate of the chain is renewed.</summary>
    public DateTimeOffset RenewableUntil => renewal.RenewableUntil(Certificate!.MailboxValidatedAt);
    public bool RenewableUntilPassed => time.GetUtcNow() > RenewableUntil;
    public bool Escrowed { get; private set; }
    public string? Error { get; private set; }
    public string? Message { get; private set; }
    public static IEnumerable<string> Reasons => RevocationReasons.ForSubscribers.Select(r => r.ToRfcName());

    public async Task<IActionResult> OnGetAsync(string serial, CancellationToken ct) => await LoadAsync(serial, ct) ? Page() : NotFound();

    public async Task<IActionResult> OnPostRevokeAsync(string serial, string? reason, bool confirm, CancellationToken ct)
    {
        if (!User.IsInRole(Roles.Administrator)) return Forbid();
        if (!confirm) Error = "Tick the confirmation box to revoke.";
        else
        {
            var outcome = await revocation.RevokeAsync(serial, new RevokeRequest(reason), AuditLog.ActorOf(User), ct);
            if (outcome.Failure is { } f) Error = f.Detail;
            else if (reason == "certificateHold") Message = "The certificate is on hold.";
            else Message = "The certificate is revoked; a new CRL has been published." + outcome.Value!.AlsoRevoked.Count switch
            {
                0 => "",
                var n => $" {n} other certificate{(n == 1 ? "" : "s")} (for the same key, or renewed on the strength of it) revoked with it: " +
                    string.Join(", ", outcome.Value.AlsoRevoked) + ".",
            };
        }
        return await LoadAsync(serial, ct) ? Page() : NotFound();
    }

    public async Task<IActionResult> OnPostReleaseAsync(string serial, CancellationToken ct)
    {
        if (!User.IsInRole(Roles.Administrator)) return Forbid();
        var outcome = await revocation.ReleaseHoldAsync(serial, AuditLog.ActorOf(User), ct);
        if (outcome.Failure is { } f) Error = f.Detail; else Message = "The hold is released; the certificate is valid again.";
        return await LoadAsync(serial, ct) ? Page() : NotFound();
    }

    /// <summary>The serial in any form people paste (colons, spaces, lower case, a leading zero left out), read as the revocation
    /// reads it: a revocation through such an address was made and then answered "not found".</summary>
    private async Task<bool> LoadAsync(string serial, CancellationToken ct)
    {
        if (!SerialNumber.TryNormalize(serial, out var s)) return false;
        var record = await db.Certificates.AsNoTracking().FirstOrDefaultAsync(c => c.SerialNumber == s, ct);
        if (record is null) return false;
        Certificate = CertificateView.From(record, time.GetUtcNow());
        Escrowed = await db.KeyEscrows.AnyAsync(e => e.SerialNumber == s && e.SupersededAt == null, ct);
        return true;
    }
}
