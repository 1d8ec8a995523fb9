using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Escrow;
using CertPortal.Renewal;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Pages;

/// <summary>"Renew your digital ID": the person opens their current .p12 in this page (wwwroot/js/renew-page.js); the
/// browser proves the old key by signing the request for a new one, and packs the new ID. The server sees neither key.
/// The link in expiry reminders names the certificate (<c>?serial=</c>): the page says which one, and refuses a file that
/// holds another certificate (a person with separate signing and encryption IDs who chose the other ID's file would
/// renew that one, and the named ID would expire unrenewed); without <c>?serial=</c> it renews the ID in any file.
/// An escrowed encryption ID is the exception: the server generates its new key (<see cref="ServerKeyRenewal"/>); the page
/// asks which way an ID renews (<c>?handler=KeySource</c>) once it has opened the file, and says so.</summary>
public sealed class RenewModel(
    CertPortalDbContext db, RenewalOptions renewal, CertPortalOptions options, KeyArchive archive, ServerKeyRenewal serverKeys, TimeProvider time) : PageModel
{
    public bool NeedsHttps { get; private set; }
    public string SecureLink { get; private set; } = "";
    public bool Enabled => renewal.Enabled;
    public IssuedCertificate? Named { get; private set; }
    public DateTimeOffset Now { get; private set; }
    public DateTimeOffset? OpensAt => Named is null ? null : Named.NotAfter - renewal.OpensBeforeExpiry;
    /// <summary>The named ID stands on a mailbox validation too old to renew on, now or by the time its window opens
    /// (<see cref="RenewalOptions.MailboxValidationReuse"/>): the page says to ask for an invitation, as the API would.</summary>
    public bool NamedNeedsInvitation => Named is not null && (OpensAt > Now ? OpensAt.Value : Now) > renewal.RenewableUntil(Named.MailboxValidatedAt);
    public string NeedsInvitationReason => Named is null ? "" : RenewalService.ValidationTooOld(Named, renewal).Detail;
    /// <summary>The named ID renews with a key the server generates and escrows.</summary>
    public bool NamedRenewsWithServerKey { get; private set; }
    /// <summary>Policy makes the server generate encryption (or dual-use) keys: some IDs renew that way.</summary>
    public bool SomeRenewWithServerKey { get; private set; }

    /// <summary>What becomes of the old certificate, as the success message says it: with <c>Renewal:SupersedeAfter</c> it is revoked as
    /// superseded that long after the renewal, and "it stays valid until it expires" would have the person leave it installed.</summary>
    public string OldCertificateFate => renewal.SupersedeAfter is { } after
        ? after <= TimeSpan.Zero
            ? "The old certificate is revoked (superseded) now; the address book gives out the new one."
            : $"The old certificate is revoked (superseded) {Span(after)} from now: install the new one everywhere you sign or read mail before then. The address book now gives out the new one."
        : "The old certificate stays valid until it expires; the address book now gives out the new one.";

    private static string Span(TimeSpan t) =>
        t.TotalDays >= 1 ? Plural(Math.Round(t.TotalDays), "day") : t.TotalHours >= 1 ? Plural(Math.Round(t.TotalHours), "hour") : Plural(Math.Max(1, Math.Round(t.TotalMinutes)), "minute");

    private static string Plural(double n, string unit) => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{n:0} {unit}{(n == 1 ? "" : "s")}");

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
        NamedRenewsWithServerKey = Named is not null && await serverKeys.RenewsWithServerKeyAsync(Named, ct);
        var policy = await archive.PolicyAsync(db, ct);
        SomeRenewWithServerKey = KeyArchive.GenerationFor(policy, CertificateProfileName.Encryption) == KeyGenerationPolicy.Required ||
                                 KeyArchive.GenerationFor(policy, CertificateProfileName.Dual) == KeyGenerationPolicy.Required;
    }

    /// <summary>How the ID with this serial renews: <c>{"serverGeneratesKey":true}</c> for an escrowed ID, and what it is
    /// used for (<c>"use":"signing"</c>, as <see cref="Pkcs12Files.Purpose"/> names it; null for a certificate this service did not issue), which the page
    /// names when the file holds another ID than the link. Certificates are public (the directory gives them out), so
    /// saying how one renews and what it is for tells nobody anything secret.</summary>
    public async Task<IActionResult> OnGetKeySourceAsync(string? serial, CancellationToken ct)
    {
        if (!Authority.SerialNumber.TryNormalize(serial, out var normalized)) return BadRequest();
        var current = await RenewalService.FindBySerialAsync(db, normalized, ct);
        return new JsonResult(new
        {
            serverGeneratesKey = current is not null && await serverKeys.RenewsWithServerKeyAsync(current, ct),
            use = current is null ? null : Pkcs12Files.Purpose(current.Profile),
        });
    }

    public static string Purpose(IssuedCertificate c) => Names.Of(c.Profile);
}
