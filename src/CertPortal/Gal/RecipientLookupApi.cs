using CertPortal.Authority;
using CertPortal.Enrollment;

namespace CertPortal.Gal;

public sealed record RecipientCertificate(string SerialNumber, string Usage, string Profile, DateTimeOffset NotBefore, DateTimeOffset NotAfter, string CertificatePem);

public sealed record RecipientCertificates(string Email, IReadOnlyList<RecipientCertificate> Certificates);

/// <summary>How mail clients and gateways find a recipient's certificate: only certificates valid now
/// (not revoked, not on hold, not expired), newest first. Answered from <see cref="RecipientCache"/>.</summary>
public static class RecipientLookupApi
{
    public static IEndpointRouteBuilder MapRecipientLookupApi(this IEndpointRouteBuilder app)
    {
        // The cache is a singleton taken once here: resolving it per request would create a request scope for nothing.
        var cache = app.ServiceProvider.GetRequiredService<RecipientCache>();
        app.MapGet("/api/v1/directory/{email}/certificates", (string email, string? usage, CancellationToken ct) => LookupAsync(cache, email, usage, ct))
            .WithTags("Directory").WithName("FindRecipientCertificates")
            .Produces<RecipientCertificates>(StatusCodes.Status200OK, "application/json").ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("A mailbox's certificates that are valid now for a usage (encryption or signing), newest first.")
            // A gateway asks for every recipient of every message, anonymously: the answer runs straight after routing,
            // without the middleware that pages and the authenticated API need (authentication, status-code pages,
            // Swagger, the pages' security headers; JsonAnswer sets the one that matters for JSON).
            .ShortCircuit();
        return app;
    }

    private static async ValueTask<IResult> LookupAsync(RecipientCache cache, string email, string? usage, CancellationToken ct)
    {
        CertificateUsage? wanted = null;
        if (!string.IsNullOrEmpty(usage))
        {
            if (!Enum.TryParse<CertificateUsage>(usage, true, out var u) || int.TryParse(usage, out _))
                return Failure.BadRequest("usage must be encryption or signing.").ToProblem();
            wanted = u;
        }
        // The cached answer is the response body itself: no query, no serialisation on a hit.
        if (cache.TryAnswerAsAsked(email, wanted, out var cached)) return new JsonAnswer(cached);
        if (!Mailbox.TryNormalize(email, out var mailbox, out var error))
            return Failure.BadRequest(error).ToProblem();
        var json = await cache.LookupAsync(mailbox, wanted, ct);
        if (json is null)
            return Failure.NotFound($"No valid {(wanted is null ? "" : Names.Of(wanted.Value) + " ")}certificate is published for {mailbox}.").ToProblem();
        return new JsonAnswer(json);
    }

    /// <summary>A cached JSON body as it is: status, type, length and the bytes (what Results.Bytes does, without its
    /// range and precondition handling, which a look-up does not offer). nosniff as on every other API answer.</summary>
    private sealed class JsonAnswer(byte[] body) : IResult
    {
        public Task ExecuteAsync(HttpContext http)
        {
            var response = http.Response;
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = "application/json";
            response.ContentLength = body.Length;
            response.Headers.XContentTypeOptions = "nosniff";
            return response.Body.WriteAsync(body).AsTask();
        }
    }
}
