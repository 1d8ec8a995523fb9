using CertPortal.Auditing;
using CertPortal.Mail;
using CertPortal.Security;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace CertPortal.Enrollment;

public static class EnrollmentApi
{
    /// <summary>API bodies are small JSON documents; 64 KiB leaves room for a 16 KiB CSR and then some.</summary>
    public const long MaxBodyBytes = 64 * 1024;

    public static IEndpointRouteBuilder MapEnrollmentApi(this IEndpointRouteBuilder app)
    {
        var tokens = app.MapGroup("/api/v1/tokens").WithTags("Enrollment tokens");
        tokens.MapPost("/", CreateToken).RequireAuthorization(Policies.Admin).WithName("CreateToken")
            .WithSummary("Issue a one-time enrollment token for a mailbox (the secret is shown in this response only).");
        tokens.MapGet("/", ListTokens).RequireAuthorization(Policies.Audit).WithName("ListTokens")
            .WithSummary("List enrollment tokens with their status (pending, used, expired, revoked).");
        tokens.MapDelete("/{id:guid}", RevokeToken).RequireAuthorization(Policies.Admin).WithName("RevokeToken")
            .WithSummary("Revoke an unused enrollment token.");

        app.MapPost("/api/v1/enrollments", Enroll).WithTags("Enrollment").WithName("Enroll")
            .WithSummary("Spend an enrollment token and a PKCS#10 CSR for a certificate (or keyAlgorithm + pkcs12Password for a server-generated, escrowed encryption key). Repeating a request that succeeded returns its certificate (200).");
        return app;
    }

    private static async Task<Results<Created<CreatedToken>, ProblemHttpResult>> CreateToken(
        [FromBody] CreateTokenRequest request, EnrollmentTokens tokens, HttpContext http, CancellationToken ct)
    {
        // "send": true mails the link (an invitation) instead of handing it to the caller. Invitations, which holds the
        // request's EF Core context, is resolved for those requests only (see Enroll).
        var outcome = request.Send
            ? await http.RequestServices.GetRequiredService<Invitations>().InviteAsync(request, AuditLog.ActorOf(http.User), ct)
            : await tokens.CreateAsync(request, AuditLog.ActorOf(http.User), ct);
        return outcome.Failure is { } f ? f.ToProblem() : TypedResults.Created($"/api/v1/tokens/{outcome.Value!.Id}", outcome.Value);
    }

    private static async Task<Ok<IReadOnlyList<TokenView>>> ListTokens(EnrollmentTokens tokens, string? email, string? status, CancellationToken ct) =>
        TypedResults.Ok(await tokens.ListAsync(email, status, ct));

    private static async Task<Results<Ok<TokenView>, ProblemHttpResult>> RevokeToken(Guid id, EnrollmentTokens tokens, HttpContext http, CancellationToken ct)
    {
        var outcome = await tokens.RevokeAsync(id, AuditLog.ActorOf(http.User), ct);
        return outcome.Failure is { } f ? f.ToProblem() : TypedResults.Ok(outcome.Value!);
    }

    /// <summary>201 for a new certificate; 200 when the request repeats one that already succeeded (same token and
    /// public key, or same requestId and password for a server-generated key): the client collects what it lost.</summary>
    private static async Task<Results<Created<EnrollmentResult>, Ok<EnrollmentResult>, ProblemHttpResult>> Enroll(
        [FromBody] EnrollmentRequest request, EnrollmentService enrollment, HttpContext http, CancellationToken ct)
    {
        // keyAlgorithm/pkcs12Password instead of a CSR: the server generates (and escrows) the key, where policy allows.
        // ServerKeyEnrollment is resolved for those requests only: as a parameter it was built for every enrollment, with
        // the pooled EF Core context it holds rented and reset each time.
        var outcome = request.KeyAlgorithm is not null || request.Pkcs12Password is not null
            ? await http.RequestServices.GetRequiredService<CertPortal.Escrow.ServerKeyEnrollment>().EnrollAsync(request, AuditActors.Enrollee, ct)
            : await enrollment.EnrollAsync(request, AuditActors.Enrollee, ct);
        if (outcome.Failure is { } f) return f.ToProblem();
        return outcome.Value!.Collected ? TypedResults.Ok(outcome.Value) : TypedResults.Created($"/api/v1/certificates/{outcome.Value.SerialNumber}", outcome.Value);
    }
}
