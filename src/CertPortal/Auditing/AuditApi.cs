using CertPortal.Data;
using CertPortal.Security;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Auditing;

public static class AuditApi
{
    public static IEndpointRouteBuilder MapAuditApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/v1/audit", List).RequireAuthorization(Policies.Audit).WithTags("Audit").WithName("AuditLog")
            .WithSummary("Audit events, newest first: who did what, when, to which token or certificate.");
        return app;
    }

    private static async Task<Ok<List<AuditEvent>>> List(CertPortalDbContext db, string? target, string? action, int? page, int? pageSize, CancellationToken ct)
    {
        var size = Math.Clamp(pageSize ?? 50, 1, 500);
        var q = db.AuditEvents.AsNoTracking();
        if (!string.IsNullOrWhiteSpace(target)) q = q.Where(a => a.Target == target);
        if (!string.IsNullOrWhiteSpace(action)) q = q.Where(a => a.Action == action);
        return TypedResults.Ok(await q.OrderByDescending(a => a.Id).Skip(Paging.Offset(page ?? 1, size)).Take(size).ToListAsync(ct));
    }
}
