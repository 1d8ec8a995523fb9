using CertPortal.Auditing;
using CertPortal.Security;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace CertPortal.Gal;

public static class DirectoryEnrollmentApi
{
    public static IEndpointRouteBuilder MapDirectoryEnrollmentApi(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/v1/directory/enrollment-runs").WithTags("Directory (LDAP)");
        group.MapPost("/", Run).RequireAuthorization(Policies.Admin).WithName("DirectoryEnrollmentRun")
            .WithSummary("Invite the people of the directory who have a mailbox and no valid certificate (dryRun: only list them).");
        group.MapGet("/", List).RequireAuthorization(Policies.Audit).WithName("DirectoryEnrollmentRuns")
            .WithSummary("The latest directory enrollment runs, scheduled and asked for, with what each found and did.");
        return app;
    }

    private static async Task<Results<Ok<DirectoryEnrollmentReport>, ProblemHttpResult>> Run(
        [FromBody] DirectoryEnrollmentRequest? request, DirectoryEnrollment enrollment, HttpContext http, CancellationToken ct)
    {
        var outcome = await enrollment.RunAsync(request ?? new DirectoryEnrollmentRequest(), AuditLog.ActorOf(http.User), ct);
        return outcome.Failure is { } f ? f.ToProblem() : TypedResults.Ok(outcome.Value!);
    }

    private static async Task<Ok<IReadOnlyList<DirectoryEnrollmentRunView>>> List(DirectoryEnrollment enrollment, CancellationToken ct) =>
        TypedResults.Ok(await enrollment.ListRunsAsync(ct));
}
