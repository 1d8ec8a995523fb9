using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Gal;
using CertPortal.Revocation;
using CertPortal.Security;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Pages.Admin;

[Authorize(Policy = Policies.Audit)]
public sealed class IndexModel(CertPortalDbContext db, DirectoryOptions directory, TimeProvider time) : PageModel
{
    public List<CrlRecord> Crls { get; } = [];
    public int Valid { get; private set; }
    public int Revoked { get; private set; }
    public int PendingTokens { get; private set; }
    public bool DirectoryConfigured => directory.IsEnabled;
    public List<DirectoryPublication> Queue { get; private set; } = [];
    public DateTimeOffset Now { get; private set; }

    public async Task OnGetAsync(CancellationToken ct)
    {
        Now = time.GetUtcNow();
        foreach (var authority in new[] { CertificateAuthority.IssuingName, CertificateAuthority.RootName })
            if (await CrlSigner.LatestWithoutBytesAsync(db, authority, ct) is { } crl) Crls.Add(crl);
        Valid = await db.Certificates.CountAsync(c => c.RevokedAt == null && c.NotAfter > Now, ct);
        Revoked = await db.Certificates.CountAsync(c => c.RevokedAt != null, ct);
        PendingTokens = await db.EnrollmentTokens.CountAsync(t => t.UsedAt == null && t.RevokedAt == null && t.ExpiresAt > Now, ct);
        if (DirectoryConfigured)
            Queue = await db.DirectoryPublications.AsNoTracking().Where(p => p.CompletedAt == null && (p.Attempts > 0 || p.NextAttemptAt <= Now))
                .OrderBy(p => p.Id).Take(50).ToListAsync(ct);
    }
}
