using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Escrow;
using Microsoft.AspNetCore.Mvc;
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
    /// <summary>Set when the token was already spent: the page says what may have happened.</summary>
    public DateTimeOffset? UsedAt { get; private set; }
    public bool UsedKeyEscrowed { get; private set; }
    /// <summary>The PKCS#12's friendlyName, the same the server writes into files it builds.</summary>
    public string FriendlyName { get; private set; } = "";
    public string FileName { get; private set; } = "digital-id.p12";
    public string OutlookRole => Found?.Profile switch
    {
        CertificateProfileName.Signing => "Signing Certificate (leave Encryption Certificate as it is)",
        CertificateProfileName.Encryption => "Encryption Certificate (leave Signing Certificate as it is)",
        _ => "Signing Certificate and as your Encryption Certificate",
    };
    public string ThunderbirdRole => Found?.Profile switch
    {
        CertificateProfileName.Signing => "for digital signing",
        CertificateProfileName.Encryption => "for encryption",
        _ => "for digital signing and for encryption",
    };
    public string AppleMailButtons => Found?.Profile switch
    {
        CertificateProfileName.Signing => "the sign button (a check mark) appears when you write a message.",
        CertificateProfileName.Encryption => "mail encrypted to you opens, and the lock button encrypts to people whose certificates you have.",
        _ => "the sign and encrypt buttons appear when you write a message.",
    };
    public string IosSetting => Found?.Profile switch
    {
        CertificateProfileName.Signing => "turn on Sign and choose this certificate",
        CertificateProfileName.Encryption => "turn on Encrypt by Default and choose this certificate",
        _ => "turn on Sign and Encrypt by Default and choose this certificate for both",
    };
    public bool ReceivesEncryptedMail => Found?.Profile is CertificateProfileName.Encryption or CertificateProfileName.Dual;
    public DateTimeOffset Now { get; private set; }

    /// <summary>Holds the token between the post and the page it redirects to (and for Back, or a reload) on this
    /// path only: HttpOnly, SameSite=Strict, an hour.</summary>
    internal const string TokenCookie = "certportal-enroll";

    /// <summary>The token comes from the cookie the post set; links sent before the token moved to the fragment
    /// (<c>/enroll?token=…</c>) keep working.</summary>
    public Task OnGetAsync(string? token, CancellationToken ct) => ShowAsync(ExtractToken(token) ?? ExtractToken(Request.Cookies[TokenCookie]), ct);

    /// <summary>The link carries the token in its fragment (<c>/enroll#token=…</c>), which browsers never send:
    /// wwwroot/js/enroll-link.js posts it here (the paste form too), so it stays out of request lines, proxy and
    /// server logs, browser history and Referer headers. Post/redirect/get: Back and reload show the page again
    /// (a spent link then explains itself) instead of asking to resend a form.</summary>
    public IActionResult OnPost(string? token)
    {
        if (ExtractToken(token) is { } t)
            Response.Cookies.Append(TokenCookie, t, new CookieOptions
            {
                HttpOnly = true, Secure = Request.IsHttps, SameSite = SameSiteMode.Strict, Path = Request.PathBase + "/enroll",
                MaxAge = TimeSpan.FromHours(1), IsEssential = true,
            });
        return RedirectToPage();
    }

    /// <summary>"Enter a different token": forget the one in the cookie.</summary>
    public IActionResult OnGetForget()
    {
        Response.Cookies.Delete(TokenCookie, new CookieOptions { Path = Request.PathBase + "/enroll" });
        return RedirectToPage();
    }

    private async Task ShowAsync(string? token, CancellationToken ct)
    {
        Now = time.GetUtcNow();
        Token = token;
        NeedsHttps = !Request.IsHttps && !IsLoopbackHost(Request.Host.Host);
        if (NeedsHttps)
        {
            SecureLink = Token is null ? $"{options.PortalUrl!.TrimEnd('/')}/enroll" : options.EnrollmentUrl(Token);
            return;
        }
        if (Token is null) return;
        var outcome = await tokens.FindUsableAsync(Token, ct);
        if (outcome.Failure is { } f)
        {
            Problem = f;
            if (await tokens.FindAsync(Token, ct) is { UsedAt: { } usedAt } used)
            {
                UsedAt = usedAt;
                UsedKeyEscrowed = used.CertificateSerial is { } serial && await db.KeyEscrows.AnyAsync(e => e.SerialNumber == serial, ct);
            }
            return;
        }
        Found = outcome.Value!;
        FriendlyName = Pkcs12Files.FriendlyName(Found.DisplayName, Found.Email, Found.Profile, options.Ca.OrganizationName);
        FileName = FileNameFor(Found.Email, Found.Profile);
        var policy = await archive.PolicyAsync(db, ct);
        Mode = KeyArchive.GenerationFor(policy, Found.Profile) == KeyGenerationPolicy.Required ? "server" : "browser";
        // Renewal: show the person what they have now, and when it runs out.
        Current = (await db.Certificates.AsNoTracking().OfMailbox(Found.Email).Where(c => c.Email == Found.Email && c.RevokedAt == null).ToListAsync(ct))
            .Where(c => c.StatusAt(Now) == CertificateStatus.Valid).OrderBy(c => c.NotAfter).ToList();
    }

    /// <summary>People paste what they were sent: the token, or the whole link (token=... in its fragment or, for
    /// older links, its query).</summary>
    public static string? ExtractToken(string? input)
    {
        if (string.IsNullOrWhiteSpace(input)) return null;
        var s = input.Trim();
        var at = s.IndexOf("token=", StringComparison.OrdinalIgnoreCase);
        if (at < 0) return s;
        s = s[(at + "token=".Length)..];
        var end = s.IndexOfAny(['&', '#', ' ', '\n', '\r', '\t']);
        s = Uri.UnescapeDataString(end < 0 ? s : s[..end]);
        return s.Length == 0 ? null : s;
    }

    /// <summary>Named after the mailbox and purpose, so two IDs in one Downloads folder are told apart.</summary>
    public static string FileNameFor(string email, CertificateProfileName profile) =>
        new string(email.Select(c => char.IsAsciiLetterOrDigit(c) || c is '@' or '.' or '-' or '_' or '+' ? c : '_').ToArray()) +
        "-" + Pkcs12Files.Purpose(profile).Replace(' ', '-') + ".p12";

    internal static bool IsLoopbackHost(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase) ||
        (System.Net.IPAddress.TryParse(host.Trim('[', ']'), out var ip) && System.Net.IPAddress.IsLoopback(ip));

    public static string Describe(CertificateProfileName profile) => profile switch
    {
        CertificateProfileName.Signing => "signing your e-mail (proves it is from you)",
        CertificateProfileName.Encryption => "receiving encrypted e-mail (only you can read it)",
        _ => "signing your e-mail and receiving encrypted e-mail",
    };
}
