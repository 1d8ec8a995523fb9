using CertPortal.Auditing;
using CertPortal.Security;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace CertPortal.Escrow;

public static class EscrowApi
{
    public static IEndpointRouteBuilder MapEscrowApi(this IEndpointRouteBuilder app)
    {
        var agents = app.MapGroup("/api/v1/recovery-agents").WithTags("Key escrow");
        agents.MapPost("/", RegisterAgent).RequireAuthorization(Policies.Admin).WithName("RegisterRecoveryAgent")
            .WithSummary("Register a recovery-agent account's certificate; shares of future escrows are encrypted to it.");
        agents.MapGet("/", ListAgents).RequireAuthorization(Policies.Audit).WithName("ListRecoveryAgents").WithSummary("List recovery agents.");
        agents.MapDelete("/{id:guid}", RetireAgent).RequireAuthorization(Policies.Admin).WithName("RetireRecoveryAgent")
            .WithSummary("Retire an agent: new escrows leave it out; existing escrows keep their agent set until re-escrowed.");

        var policy = app.MapGroup("/api/v1/escrow/policy").WithTags("Key escrow");
        policy.MapGet("/", GetPolicy).RequireAuthorization(Policies.Audit).WithName("EscrowPolicy")
            .WithSummary("M (threshold), N (minimumAgents), the active agents and per-profile server key generation (Refused, Allowed, Required).");
        policy.MapPut("/", UpdatePolicy).RequireAuthorization(Policies.Admin).WithName("UpdateEscrowPolicy").WithSummary("Change the escrow policy.");

        var recoveries = app.MapGroup("/api/v1/recoveries").WithTags("Key recovery");
        recoveries.MapPost("/", Open).RequireAuthorization(Policies.Admin).WithName("OpenRecovery")
            .WithSummary("Open a recovery (or re-escrow) request for an escrowed key; it needs M agent approvals.");
        recoveries.MapGet("/", List).RequireAuthorization(Policies.RecoveryParticipant).WithName("ListRecoveries").WithSummary("Recovery requests, newest first.");
        recoveries.MapGet("/{id:guid}", Get).RequireAuthorization(Policies.RecoveryParticipant).WithName("GetRecovery").WithSummary("A recovery request and its approvals.");
        recoveries.MapGet("/{id:guid}/share", Share).RequireAuthorization(Policies.RecoveryAgent).WithName("GetEncryptedShare")
            .WithSummary("The calling agent's encrypted share (CMS PEM): decrypt it with `certportal-kra decrypt-share`.");
        recoveries.MapPost("/{id:guid}/approvals", Approve).RequireAuthorization(Policies.RecoveryAgent).WithName("ApproveRecovery")
            .WithSummary("Submit the decrypted share; checked against its commitment; an agent counts once.");
        recoveries.MapPost("/{id:guid}/pkcs12", Export).RequireAuthorization(Policies.Admin).WithName("ExportRecoveredKey")
            .WithSummary("Once M approvals are in: rebuild the key, check it, and return it once as password-protected PKCS#12.");
        recoveries.MapPost("/{id:guid}/cancel", Cancel).RequireAuthorization(Policies.Admin).WithName("CancelRecovery")
            .WithSummary("Withdraw an open request; shares already submitted are erased.");
        recoveries.MapPost("/{id:guid}/re-escrow", ReEscrow).RequireAuthorization(Policies.Admin).WithName("ReEscrow")
            .WithSummary("Once M approvals are in: re-split the key's data key to the current agents and threshold.");
        return app;
    }

    private static async Task<Results<Created<AgentView>, ProblemHttpResult>> RegisterAgent([FromBody] RegisterAgentRequest body, KeyRecovery recovery, HttpContext http, CancellationToken ct)
    {
        var o = await recovery.RegisterAgentAsync(body, AuditLog.ActorOf(http.User), ct);
        return o.Failure is { } f ? f.ToProblem() : TypedResults.Created($"/api/v1/recovery-agents/{o.Value!.Id}", o.Value);
    }

    private static async Task<Ok<IReadOnlyList<AgentView>>> ListAgents(KeyRecovery recovery, CancellationToken ct) => TypedResults.Ok(await recovery.ListAgentsAsync(ct));

    private static async Task<Results<Ok<AgentView>, ProblemHttpResult>> RetireAgent(Guid id, KeyRecovery recovery, HttpContext http, CancellationToken ct) =>
        Map(await recovery.RetireAgentAsync(id, AuditLog.ActorOf(http.User), ct));

    private static async Task<Ok<EscrowPolicyView>> GetPolicy(KeyRecovery recovery, CancellationToken ct) => TypedResults.Ok(await recovery.PolicyAsync(ct));

    private static async Task<Results<Ok<EscrowPolicyView>, ProblemHttpResult>> UpdatePolicy([FromBody] PolicyUpdate body, KeyRecovery recovery, HttpContext http, CancellationToken ct) =>
        Map(await recovery.UpdatePolicyAsync(body, AuditLog.ActorOf(http.User), ct));

    private static async Task<Results<Created<RecoveryView>, ProblemHttpResult>> Open([FromBody] OpenRecoveryRequest body, KeyRecovery recovery, HttpContext http, CancellationToken ct)
    {
        var o = await recovery.OpenAsync(body, AuditLog.ActorOf(http.User), ct);
        return o.Failure is { } f ? f.ToProblem() : TypedResults.Created($"/api/v1/recoveries/{o.Value!.Id}", o.Value);
    }

    private static async Task<Ok<IReadOnlyList<RecoveryView>>> List(KeyRecovery recovery, CancellationToken ct) => TypedResults.Ok(await recovery.ListAsync(ct));

    private static async Task<Results<Ok<RecoveryView>, ProblemHttpResult>> Get(Guid id, KeyRecovery recovery, CancellationToken ct) => Map(await recovery.GetAsync(id, ct));

    private static async Task<Results<Ok<EncryptedShareView>, ProblemHttpResult>> Share(Guid id, KeyRecovery recovery, HttpContext http, CancellationToken ct) =>
        Map(await recovery.ShareForAgentAsync(id, Accounts.IdOf(http.User) ?? Guid.Empty, AuditLog.ActorOf(http.User), ct));

    private static async Task<Results<Ok<RecoveryView>, ProblemHttpResult>> Approve(Guid id, [FromBody] SubmitShareRequest body, KeyRecovery recovery, HttpContext http, CancellationToken ct) =>
        Map(await recovery.ApproveAsync(id, Accounts.IdOf(http.User) ?? Guid.Empty, body, AuditLog.ActorOf(http.User), ct));

    private static async Task<Results<Ok<RecoveredKey>, ProblemHttpResult>> Export(Guid id, [FromBody] RecoveredKeyRequest body, KeyRecovery recovery, HttpContext http, CancellationToken ct) =>
        Map(await recovery.ExportAsync(id, body, AuditLog.ActorOf(http.User), ct));

    private static async Task<Results<Ok<ReEscrowResult>, ProblemHttpResult>> ReEscrow(Guid id, KeyRecovery recovery, HttpContext http, CancellationToken ct) =>
        Map(await recovery.ReEscrowAsync(id, AuditLog.ActorOf(http.User), ct));

    private static async Task<Results<Ok<RecoveryView>, ProblemHttpResult>> Cancel(Guid id, [FromBody] CancelRecoveryRequest? body, KeyRecovery recovery, HttpContext http, CancellationToken ct) =>
        Map(await recovery.CancelAsync(id, body ?? new CancelRecoveryRequest(null), AuditLog.ActorOf(http.User), ct));

    private static Results<Ok<T>, ProblemHttpResult> Map<T>(Outcome<T> o) => o.Failure is { } f ? f.ToProblem() : TypedResults.Ok(o.Value!);
}
