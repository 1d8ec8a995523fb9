using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Escrow;

/// <summary>An agent counts toward N, and gets a share of new escrows, only while its account is enabled and still a
/// recovery agent: a share sealed to a disabled account (which can never sign in to approve) or to an account moved to
/// another role is a share no one will submit. Its own app: the test disables and demotes agents.</summary>
public sealed class AgentAccountTests(EscrowApp app) : IClassFixture<EscrowApp>
{
    [Fact]
    public async Task Disabled_or_demoted_agent_accounts_get_no_shares_and_do_not_count_toward_N()
    {
        Tool.Require("openssl", "openssl");
        var agents = new List<Agent> { await app.AddAgentAsync("RSA-2048"), await app.AddAgentAsync("EC-P256"), await app.AddAgentAsync("RSA-2048") };
        Assert.Equal(3, await ActiveAgentsAsync());
        var first = await app.EnrollServerKeyAsync(Mailbox());
        Assert.Equal(agents.Select(a => a.AgentId).Order(), await ShareHoldersAsync(first));

        // The first agent leaves: its account is disabled (docs/escrow.md: "disable its account to stop it entirely").
        await Http.EnsureStatus(await app.Admin.DeleteAsync($"/api/v1/accounts/{await AccountIdAsync(agents[0])}"), HttpStatusCode.OK);
        Assert.Equal(2, await ActiveAgentsAsync());
        var refused = await app.Client.PostAsJsonAsync("/api/v1/enrollments", new
        {
            token = (await app.CreateTokenAsync(Mailbox(), "encryption")).Token, keyAlgorithm = "RSA-2048", pkcs12Password = EscrowApp.Pkcs12Password,
        });
        Assert.Contains("2 are active", (await Http.AssertProblem(refused, HttpStatusCode.Conflict)).ToString());

        // A new agent joins: the escrow goes to the three enabled agents only.
        agents.Add(await app.AddAgentAsync("EC-P256"));
        var second = await app.EnrollServerKeyAsync(Mailbox());
        Assert.Equal(agents.Skip(1).Select(a => a.AgentId).Order(), await ShareHoldersAsync(second));

        // An agent made an administrator is no longer an agent.
        await Http.EnsureStatus(await app.Admin.PutAsJsonAsync($"/api/v1/accounts/{await AccountIdAsync(agents[1])}/role", new { role = "administrator" }),
            HttpStatusCode.OK);
        Assert.Equal(2, await ActiveAgentsAsync());
        var tooFew = await app.Client.PostAsJsonAsync("/api/v1/enrollments", new
        {
            token = (await app.CreateTokenAsync(Mailbox(), "encryption")).Token, keyAlgorithm = "RSA-2048", pkcs12Password = EscrowApp.Pkcs12Password,
        });
        await Http.AssertProblem(tooFew, HttpStatusCode.Conflict);

        // Existing escrows are untouched: the first one is still opened by two of the agents that hold its shares.
        var requestId = await app.OpenRecoveryAsync(first.GetProperty("serialNumber").GetString()!);
        await Http.EnsureStatus(await app.ApproveAsync(agents[2], requestId), HttpStatusCode.OK);
        // The demoted agent can no longer approve.
        Assert.Equal(HttpStatusCode.Forbidden, (await RecoveryAgents.SubmitShareAsync(agents[1], requestId, "1:00")).StatusCode);
    }

    private async Task<int> ActiveAgentsAsync() =>
        (await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/escrow/policy")).GetProperty("activeAgents").GetInt32();

    private async Task<Guid> AccountIdAsync(Agent agent) =>
        (await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/accounts")).EnumerateArray()
            .Single(a => a.GetProperty("name").GetString() == agent.Name).GetProperty("id").GetGuid();

    private async Task<IEnumerable<Guid>> ShareHoldersAsync(JsonElement enrolled)
    {
        var escrowId = await app.EscrowIdAsync(enrolled.GetProperty("serialNumber").GetString()!);
        using var scope = app.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        return (await db.EscrowShares.Where(s => s.EscrowId == escrowId).Select(s => s.AgentId).ToListAsync()).Order();
    }

    private static string Mailbox() => $"agents.{Guid.NewGuid().ToString("N")[..8]}@example.test";
}
