using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Revocation;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Gal;

public sealed record RecipientCertificate(string SerialNumber, string Usage, string Profile, DateTimeOffset NotBefore, DateTimeOffset NotAfter, string CertificatePem);

public sealed record RecipientCertificates(string Email, IReadOnlyList<RecipientCertificate> Certificates);

/// <summary>How mail clients and gateways find a recipient's certificate: only certificates valid now
/// (not revoked, not on hold, not expired), newest first.</summary>
public static class RecipientLookupApi
{
    public static IEndpointRouteBuilder MapRecipientLookupApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/v1/directory/{email}/certificates", Lookup).WithTags("Directory").WithName("FindRecipientCertificates")
            .WithSummary("A mailbox's certificates that are valid now for a usage (encryption or signing), newest first.");
        return app;
    }

    private static async Task<Results<Ok<RecipientCertificates>, ProblemHttpResult>> Lookup(string email, string? usage,
        CertPortalDbContext db, TimeProvider time, CancellationToken ct)
    {
        if (!Mailbox.TryNormalize(email, out var mailbox, out var error))
            return Failure.BadRequest(error).ToProblem();
        CertificateUsage? wanted = null;
        if (!string.IsNullOrEmpty(usage))
        {
            if (!Enum.TryParse<CertificateUsage>(usage, true, out var u) || int.TryParse(usage, out _))
                return Failure.BadRequest("usage must be encryption or signing.").ToProblem();
            wanted = u;
        }
        var profiles = wanted is { } w ? CertificateProfile.Serving(w) : Enum.GetValues<CertificateProfileName>();
        var now = time.GetUtcNow();
        var lower = mailbox.ToLowerInvariant();
        // CA1862 would have string.Equals(..., OrdinalIgnoreCase), which EF Core cannot translate to SQL;
        // ToLower() becomes lower() in both SQLite and PostgreSQL.
#pragma warning disable CA1862
        var found = await db.Certificates.AsNoTracking()
            .Where(c => c.Email.ToLower() == lower && c.RevokedAt == null && c.NotBefore <= now && c.NotAfter > now && profiles.Contains(c.Profile))
            .OrderByDescending(c => c.NotBefore).ThenByDescending(c => c.IssuedAt)
            .ToListAsync(ct);
#pragma warning restore CA1862
        if (found.Count == 0)
            return Failure.NotFound($"No valid {(wanted is null ? "" : Names.Of(wanted.Value) + " ")}certificate is published for {mailbox}.").ToProblem();
        return TypedResults.Ok(new RecipientCertificates(mailbox, found.Select(c => new RecipientCertificate(c.SerialNumber,
            wanted is { } x ? Names.Of(x) : (c.Profile == CertificateProfileName.Dual ? "signing,encryption" : Names.Of(c.Profile)),
            Names.Of(c.Profile), c.NotBefore, c.NotAfter, Pem.Certificate(c.Der))).ToList()));
    }
}
