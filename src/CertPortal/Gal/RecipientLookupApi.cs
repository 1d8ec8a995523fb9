using CertPortal.Authority;
using CertPortal.Enrollment;
using Microsoft.AspNetCore.Http.HttpResults;

namespace CertPortal.Gal;

public sealed record RecipientCertificate(string SerialNumber, string Usage, string Profile, DateTimeOffset NotBefore, DateTimeOffset NotAfter, string CertificatePem);

public sealed record RecipientCertificates(string Email, IReadOnlyList<RecipientCertificate> Certificates);

/// <summary>How mail clients and gateways find a recipient's certificate: only certificates valid now
/// (not revoked, not on hold, not expired), newest first. Answered from <see cref="RecipientCache"/>.</summary>
public static class RecipientLookupApi
{
    public static IEndpointRouteBuilder MapRecipientLookupApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/v1/directory/{email}/certificates", Lookup).WithTags("Directory").WithName("FindRecipientCertificates")
            .Produces<RecipientCertificates>(StatusCodes.Status200OK, "application/json")
            .WithSummary("A mailbox's certificates that are valid now for a usage (encryption or signing), newest first.");
        return app;
    }

    private static async Task<Results<FileContentHttpResult, ProblemHttpResult>> Lookup(string email, string? usage,
        RecipientCache cache, CancellationToken ct)
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
        // The cached answer is the response body itself: no query, no serialisation on a hit.
        var json = await cache.LookupAsync(mailbox, wanted, ct);
        if (json is null)
            return Failure.NotFound($"No valid {(wanted is null ? "" : Names.Of(wanted.Value) + " ")}certificate is published for {mailbox}.").ToProblem();
        return TypedResults.Bytes(json, "application/json");
    }
}
