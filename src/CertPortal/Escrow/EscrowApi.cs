using CertPortal.Auditing;
using CertPortal.Security;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace CertPortal.Escrow;

// The API's request and response bodies; the console (Pages/Admin/Recoveries) uses the same ones.
public sealed record RegisterAgentRequest(Guid? AccountId, string? CertificatePem);
public sealed record AgentView(Guid Id, Guid AccountId, string Name, string CertificateSha256, string Subject, DateTimeOffset NotAfter,
    DateTimeOffset RegisteredAt, DateTimeOffset? RetiredAt);
public sealed record PolicyUpdate(int? Threshold, int? MinimumAgents, string? EncryptionKeyGeneration, string? DualKeyGeneration);
public sealed record EscrowPolicyView(int Threshold, int MinimumAgents, int ActiveAgents, string EncryptionKeyGeneration, string DualKeyGeneration);
public sealed record OpenRecoveryRequest(string? SerialNumber, string? Reason, string? Purpose);
public sealed record RecoveryView(Guid Id, string SerialNumber, string Purpose, string Reason, string Status, int Threshold,
    int Approvals, IReadOnlyList<string> ApprovedBy, string RequestedBy, DateTimeOffset CreatedAt, DateTimeOffset ExpiresAt, DateTimeOffset? CompletedAt);
/// <param name="SubmissionCertificatePem">The request's certificate that certportal-kra seals the decrypted share to.</param>
public sealed record EncryptedShareView(Guid RequestId, string SerialNumber, string EncryptedSharePem, string SubmissionCertificatePem);
// A share and a PKCS#12 password must never reach a log through a record's generated ToString.
/// <param name="SealedShare">What `certportal-kra decrypt-share` prints: the share sealed to this request (Escrow/SealedShare.cs).</param>
/// <param name="Share">A plaintext share, accepted only with CertPortal:Escrow:AcceptPlaintextShares.</param>
public sealed record SubmitShareRequest(string? Share, string? SealedShare = null)
{
    public override string ToString() => SealedShare is not null ? $"sealed share ({SealedShare.Length} characters)" : $"share ({Share?.Length ?? 0} characters)";
}
public sealed record RecoveredKeyRequest(string? Password, string? Pkcs12Format)
{
    public override string ToString() => $"recovered key request ({Pkcs12Format})";
}
public sealed record RecoveredKey(Guid RequestId, string SerialNumber, string Pkcs12);
public sealed record ReEscrowResult(Guid EscrowId, int Threshold, IReadOnlyList<string> Agents);
public sealed record CancelRecoveryRequest(string? Reason);

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
            .WithSummary("The calling agent's encrypted share (CMS PEM) and the request's certificate: `certportal-kra decrypt-share` decrypts the share and seals it to the request.");
        recoveries.MapPost("/{id:guid}/approvals", Approve).RequireAuthorization(Policies.RecoveryAgent).WithName("ApproveRecovery")
            .WithSummary("Submit the sealed share; opened, checked to name this request and against its commitment; an agent counts once.");
        recoveries.MapPost("/{id:guid}/pkcs12", Export).RequireAuthorization(Policies.Admin).WithName("ExportRecoveredKey")
            .WithSummary("Once M approvals are in: rebuild the key, check it, and return it once as password-protected PKCS#12.");
        recoveries.MapPost("/{id:guid}/cancel", Cancel).RequireAuthorization(Policies.Admin).WithName("CancelRecovery")
            .WithSummary("Withdraw an open request; shares already submitted are erased.");
        recoveries.MapPost("/{id:guid}/re-escrow", ReEscrow).RequireAuthorization(Policies.Admin).WithName("ReEscrow")
            .WithSummary("Once M approvals are in: re-split the key's data key to the current agents and threshold.");
        return app;
    }

    private static async Task<Results<Created<AgentView>, ProblemHttpResult>> RegisterAgent([FromBody] RegisterAgentRequest body, RecoveryAgentRegistry agents, HttpContext http, CancellationToken ct)
    {
        var o = await agents.RegisterAsync(body, AuditLog.ActorOf(http.User), ct);
        return o.Failure is { } f ? f.ToProblem() : TypedResults.Created($"/api/v1/recovery-agents/{o.Value!.Id}", o.Value);
    }

    private static async Task<Ok<IReadOnlyList<AgentView>>> ListAgents(RecoveryAgentRegistry agents, CancellationToken ct) => TypedResults.Ok(await agents.ListAsync(ct));

    private static async Task<Results<Ok<AgentView>, ProblemHttpResult>> RetireAgent(Guid id, RecoveryAgentRegistry agents, HttpContext http, CancellationToken ct) =>
        Map(await agents.RetireAsync(id, AuditLog.ActorOf(http.User), ct));

    private static async Task<Ok<EscrowPolicyView>> GetPolicy(EscrowPolicyEditor policy, CancellationToken ct) => TypedResults.Ok(await policy.GetAsync(ct));

    private static async Task<Results<Ok<EscrowPolicyView>, ProblemHttpResult>> UpdatePolicy([FromBody] PolicyUpdate body, EscrowPolicyEditor policy, HttpContext http, CancellationToken ct) =>
        Map(await policy.UpdateAsync(body, AuditLog.ActorOf(http.User), ct));

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
