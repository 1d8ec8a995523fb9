using CertPortal.Auditing;
using CertPortal.Security;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace CertPortal.Mail;

public static class MailApi
{
    public static IEndpointRouteBuilder MapMailApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/api/v1/invitations", Invite).RequireAuthorization(Policies.Admin).WithTags("Mail").WithName("Invite")
            .WithSummary("Create one enrollment token per person and mail each their link; reports per row (a failing row does not stop the others). " +
                "With an Idempotency-Key header, the same list sent again with the same key within 24 hours invites only the rows not yet invited.");
        app.MapGet("/api/v1/notifications", List).RequireAuthorization(Policies.Audit).WithTags("Mail").WithName("ListNotifications")
            .WithSummary("Messages in the mail outbox: queued, sent or failed, newest first (never the links they carry).");
        return app;
    }

    private static async Task<Results<Ok<BulkInvitationResult>, ProblemHttpResult>> Invite(
        [FromBody] BulkInvitationRequest request, [FromHeader(Name = "Idempotency-Key")] string? idempotencyKey, Invitations invitations,
        HttpContext http, CancellationToken ct)
    {
        var outcome = await invitations.InviteManyAsync(request, AuditLog.ActorOf(http.User), ct, idempotencyKey: idempotencyKey);
        return outcome.Failure is { } f ? f.ToProblem() : TypedResults.Ok(outcome.Value!);
    }

    private static async Task<Results<Ok<NotificationPage>, ProblemHttpResult>> List(Notifications notifications,
        string? status, string? kind, string? recipient, int? page, int? pageSize, CancellationToken ct)
    {
        var outcome = await notifications.ListAsync(status, kind, recipient, page, pageSize, ct);
        return outcome.Failure is { } f ? f.ToProblem() : TypedResults.Ok(outcome.Value!);
    }
}
