using CertPortal.Auditing;
using CertPortal.Data;
using CertPortal.Security;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Revocation;

/// <summary>Keys that may never be certified again: those revoked for keyCompromise, and those an
/// administrator reports compromised by other means (a leaked key file, a vendor advisory).</summary>
public static class BlockedKeysApi
{
    public static IEndpointRouteBuilder MapBlockedKeysApi(this IEndpointRouteBuilder app)
    {
        var keys = app.MapGroup("/api/v1/blocked-keys").WithTags("Revocation");
        keys.MapPost("/", Block).RequireAuthorization(Policies.Admin).WithName("BlockKey")
            .WithSummary("Block a compromised key (PEM public key, certificate, CSR or private key) and revoke its certificates for keyCompromise.");
        keys.MapGet("/", List).RequireAuthorization(Policies.Audit).WithName("ListBlockedKeys")
            .WithSummary("Blocked keys (SPKI SHA-256), newest first.");
        return app;
    }

    private static async Task<Results<Created<BlockKeyResult>, Ok<BlockKeyResult>, ProblemHttpResult>> Block(
        [FromBody] BlockKeyRequest request, RevocationService revocation, HttpContext http, CancellationToken ct)
    {
        var outcome = await revocation.BlockKeyAsync(request, AuditLog.ActorOf(http.User), ct);
        if (outcome.Failure is { } f) return f.ToProblem();
        var (result, created) = outcome.Value;
        return created ? TypedResults.Created($"/api/v1/blocked-keys?spkiSha256={result.Key.SpkiSha256}", result) : TypedResults.Ok(result);
    }

    private static async Task<Ok<List<BlockedKeyView>>> List(CertPortalDbContext db, string? spkiSha256, CancellationToken ct)
    {
        var q = db.BlockedKeys.AsNoTracking();
        if (!string.IsNullOrWhiteSpace(spkiSha256))
        {
            var wanted = spkiSha256.Trim().ToUpperInvariant(); // stored upper-case hex
            q = q.Where(k => k.SpkiSha256 == wanted);
        }
        var keys = await q.OrderByDescending(k => k.BlockedAt).Take(1000).ToListAsync(ct);
        return TypedResults.Ok(keys.Select(BlockedKeyView.From).ToList());
    }
}
