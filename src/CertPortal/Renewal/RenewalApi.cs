using CertPortal.Enrollment;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace CertPortal.Renewal;

public static class RenewalApi
{
    public static IEndpointRouteBuilder MapRenewalApi(this IEndpointRouteBuilder app)
    {
        // No bearer key: the signature by the current certificate's key is the authentication.
        app.MapPost("/api/v1/renewals", Renew).WithTags("Renewal").WithName("Renew")
            .WithSummary("Renew a valid certificate: a CMS SignedData over the new CSR (or, for a key the server generates and escrows, over {\"keyAlgorithm\":...} with pkcs12Password beside it), signed by the current certificate's key; expectedSerialNumber, optional, names that certificate (422 when another one signed). 201 with the new certificate (and PKCS#12); 200 when the same renewal is repeated.");
        return app;
    }

    private static async Task<Results<Created<EnrollmentResult>, Ok<EnrollmentResult>, ProblemHttpResult>> Renew(
        [FromBody] RenewalRequest request, RenewalService renewals, CancellationToken ct)
    {
        var outcome = await renewals.RenewAsync(request, ct);
        if (outcome.Failure is { } f) return f.ToProblem();
        return outcome.Value!.Collected ? TypedResults.Ok(outcome.Value) : TypedResults.Created($"/api/v1/certificates/{outcome.Value.SerialNumber}", outcome.Value);
    }
}
