using CertPortal.Data;
using CertPortal.Security;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc.RazorPages;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Pages.Admin;

[Authorize(Policy = Policies.Audit)]
public sealed class AuditModel(CertPortalDbContext db) : PageModel
{
    public const int PageSize = 50;
    public List<AuditEvent> Events { get; private set; } = [];
    public int PageNumber { get; private set; }
    public string? Target { get; private set; }

    public async Task OnGetAsync(string? target, int? p, CancellationToken ct)
    {
        PageNumber = Math.Max(p ?? 1, 1);
        Target = target;
        var q = db.AuditEvents.AsNoTracking();
        if (!string.IsNullOrWhiteSpace(target)) q = q.Where(a => a.Target.Contains(target.Trim()));
        Events = await q.OrderByDescending(a => a.Id).Skip((PageNumber - 1) * PageSize).Take(PageSize).ToListAsync(ct);
    }
}
