using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Escrow;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Pages;

/// <summary>"Get A Digital ID": shows whose ID a token is for, without spending it. The key pair, the
/// request and the PKCS#12 are made in the browser (wwwroot/js/enroll-page.js); only where policy
/// requires an escrowed encryption key does the server generate it, and the page says so.</summary>
public sealed class EnrollModel(EnrollmentTokens tokens, KeyArchive archive, CertPortalDbContext db, TimeProvider time, CertPortalOptions options) : PageModel
{
    /// <summary>Plain http on a non-loopback name: the browser gives no WebCrypto there, so the page sends the
    /// person to the portal's https address instead of offering a form that cannot work.</summary>
    public bool NeedsHttps { get; private set; }
    public string SecureLink { get; private set; } = "";
    public string? Token { get; private set; }
    public EnrollmentToken? Found { get; private set; }
    public Failure? Problem { get; private set; }
    /// <summary>"browser" (key never leaves the browser) or "server" (generated and escrowed by policy).</summary>
    public string Mode { get; private set; } = "browser";
    public IReadOnlyList<IssuedCertificate> Current { get; private set; } = [];
    public DateTimeOffset Now { get; private set; }

    public async Task OnGetAsync(string? token, CancellationToken ct)
    {
        Now = time.GetUtcNow();
        Token = string.IsNullOrWhiteSpace(token) ? null : token.Trim();
        NeedsHttps = !Request.IsHttps && !IsLoopbackHost(Request.Host.Host);
        if (NeedsHttps)
        {
            SecureLink = Token is null ? $"{options.PortalUrl!.TrimEnd('/')}/enroll" : options.EnrollmentUrl(Token);
            return;
        }
        if (Token is null) return;
        var outcome = await tokens.FindUsableAsync(Token, ct);
        if (outcome.Failure is { } f) { Problem = f; return; }
        Found = outcome.Value!;
        var policy = await archive.PolicyAsync(db, ct);
        Mode = KeyArchive.GenerationFor(policy, Found.Profile) == KeyGenerationPolicy.Required ? "server" : "browser";
        // Renewal: show the person what they have now, and when it runs out.
        Current = (await db.Certificates.AsNoTracking().Where(c => c.Email == Found.Email && c.RevokedAt == null).ToListAsync(ct))
            .Where(c => c.StatusAt(Now) == CertificateStatus.Valid).OrderBy(c => c.NotAfter).ToList();
    }

    private static bool IsLoopbackHost(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase) ||
        (System.Net.IPAddress.TryParse(host.Trim('[', ']'), out var ip) && System.Net.IPAddress.IsLoopback(ip));

    public static string Describe(CertificateProfileName profile) => profile switch
    {
        CertificateProfileName.Signing => "signing your e-mail (proves it is from you)",
        CertificateProfileName.Encryption => "receiving encrypted e-mail (only you can read it)",
        _ => "signing your e-mail and receiving encrypted e-mail",
    };
}
