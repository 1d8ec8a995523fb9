using CertPortal.Auditing;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace CertPortal.Security;

public sealed record ChangeRoleRequest(string? Role);

public static class AccountsApi
{
    public static IEndpointRouteBuilder MapAccountsApi(this IEndpointRouteBuilder app)
    {
        var accounts = app.MapGroup("/api/v1/accounts").WithTags("Accounts").RequireAuthorization(Policies.Admin);
        accounts.MapPost("/", Create).WithName("CreateAccount")
            .WithSummary("Create an administrator, auditor or recovery-agent account (its API key is shown in this response only).");
        accounts.MapGet("/", List).WithName("ListAccounts").WithSummary("List accounts.");
        accounts.MapDelete("/{id:guid}", Disable).WithName("DisableAccount")
            .WithSummary("Disable an account: its API key and password stop working at once.");
        accounts.MapPut("/{id:guid}/role", ChangeRole).WithName("ChangeAccountRole")
            .WithSummary("Change an account's role: its open console sessions end at their next request.");
        return app;
    }

    private static async Task<Results<Ok<AccountView>, ProblemHttpResult>> ChangeRole(
        Guid id, [FromBody] ChangeRoleRequest request, Accounts accounts, HttpContext http, CancellationToken ct)
    {
        var outcome = await accounts.ChangeRoleAsync(id, request.Role, AuditLog.ActorOf(http.User), ct);
        return outcome.Failure is { } f ? f.ToProblem() : TypedResults.Ok(outcome.Value!);
    }

    private static async Task<Results<Created<CreatedAccount>, ProblemHttpResult>> Create(
        [FromBody] CreateAccountRequest request, Accounts accounts, HttpContext http, CancellationToken ct)
    {
        var outcome = await accounts.CreateAsync(request, AuditLog.ActorOf(http.User), ct);
        return outcome.Failure is { } f ? f.ToProblem() : TypedResults.Created($"/api/v1/accounts/{outcome.Value!.Id}", outcome.Value);
    }

    private static async Task<Ok<IReadOnlyList<AccountView>>> List(Accounts accounts, CancellationToken ct) =>
        TypedResults.Ok(await accounts.ListAsync(ct));

    private static async Task<Results<Ok<AccountView>, ProblemHttpResult>> Disable(Guid id, Accounts accounts, HttpContext http, CancellationToken ct)
    {
        var outcome = await accounts.DisableAsync(id, AuditLog.ActorOf(http.User), ct);
        return outcome.Failure is { } f ? f.ToProblem() : TypedResults.Ok(outcome.Value!);
    }
}
