using System.Text.Json;
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
    public IReadOnlyList<string> Actions { get; private set; } = [];
    public int PageNumber { get; private set; }
    public string? Target { get; private set; }
    public string? Action { get; private set; }
    public string? Actor { get; private set; }

    public async Task OnGetAsync(string? target, string? action, string? actor, int? p, CancellationToken ct)
    {
        PageNumber = Math.Max(p ?? 1, 1);
        (Target, Action, Actor) = (target?.Trim(), action?.Trim(), actor?.Trim());
        var q = db.AuditEvents.AsNoTracking();
        if (!string.IsNullOrEmpty(Target)) q = q.Where(a => a.Target.Contains(Target));
        if (!string.IsNullOrEmpty(Action)) q = q.Where(a => a.Action == Action);
        if (!string.IsNullOrEmpty(Actor))
        {
            var needle = Actor.ToLowerInvariant();
#pragma warning disable CA1862 // EF translates ToLower().Contains to SQL; the StringComparison overload does not translate
            q = q.Where(a => a.Actor.ToLower().Contains(needle));
#pragma warning restore CA1862
        }
        Events = await q.OrderByDescending(a => a.Id).Skip(Paging.Offset(PageNumber, PageSize)).Take(PageSize).ToListAsync(ct);
        Actions = await db.AuditEvents.AsNoTracking().Select(a => a.Action).Distinct().OrderBy(a => a).ToListAsync(ct);
    }

    public string PageLink(int page) =>
        $"/admin/audit?target={Uri.EscapeDataString(Target ?? "")}&action={Uri.EscapeDataString(Action ?? "")}&actor={Uri.EscapeDataString(Actor ?? "")}&p={page}";

    /// <summary>An event's details (a JSON object) as name/value pairs to read, not JSON to parse by eye.</summary>
    public static IReadOnlyList<(string Name, string Value)> Fields(string? details)
    {
        if (string.IsNullOrWhiteSpace(details)) return [];
        try
        {
            using var doc = JsonDocument.Parse(details);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return [("details", details)];
            return doc.RootElement.EnumerateObject().Select(p => (p.Name, p.Value.ValueKind switch
            {
                JsonValueKind.String => p.Value.GetString() ?? "",
                JsonValueKind.Array => string.Join(", ", p.Value.EnumerateArray().Select(v => v.ValueKind == JsonValueKind.String ? v.GetString() : v.GetRawText())),
                JsonValueKind.Null => "",
                _ => p.Value.GetRawText(),
            })).ToList();
        }
        catch (JsonException)
        {
            return [("details", details)];
        }
    }
}
