using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Escrow;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Postgres;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Escrow;

/// <summary>The escrow workflow on PostgreSQL, the deployment database: its migrations and the
/// set-based updates of recovery (claim, erase, re-escrow) run on Npgsql too.</summary>
public sealed class EscrowPostgresTests(PostgresApp app) : IClassFixture<PostgresApp>, IDisposable
{
    private readonly ToolDir _agentDir = new("kra-pg-agents");

    public void Dispose() => _agentDir.Dispose();

    [Fact]
    public async Task Escrow_recovery_cancel_and_re_escrow_on_postgresql()
    {
        var agents = new[]
        {
            await app.AddRecoveryAgentAsync(_agentDir), await app.AddRecoveryAgentAsync(_agentDir, "EC-P256"),
            await app.AddCliRecoveryAgentAsync(_agentDir, "RSA-3072"),
        };
        await Http.EnsureStatus(await app.Admin.PutAsJsonAsync("/api/v1/escrow/policy", new { minimumAgents = 3 }), HttpStatusCode.OK);
        var serial = (await app.EnrollServerKeyAsync($"pg.{Guid.NewGuid().ToString("N")[..8]}@example.test", "EC-P256"))
            .GetProperty("serialNumber").GetString()!;

        var cancelled = await app.OpenRecoveryAsync(serial);
        await Http.EnsureStatus(await app.ApproveAsync(agents[2], cancelled), HttpStatusCode.OK);
        await Http.EnsureStatus(await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{cancelled}/cancel", new { reason = "test" }), HttpStatusCode.OK);

        var reEscrow = await app.OpenRecoveryAsync(serial, "re-escrow");
        var pending = await app.OpenRecoveryAsync(serial);
        await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => app.ApproveAsync(agents[0], reEscrow)).Append(app.ApproveAsync(agents[1], reEscrow)));
        await Http.EnsureStatus(await app.ApproveAsync(agents[0], pending), HttpStatusCode.OK);
        await Http.EnsureStatus(await app.Admin.PostAsync($"/api/v1/recoveries/{reEscrow}/re-escrow", null), HttpStatusCode.OK);
        Assert.Equal("cancelled", (await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{pending}")).GetProperty("status").GetString());

        var recovery = await app.OpenRecoveryAsync(serial);
        await Http.EnsureStatus(await app.ApproveAsync(agents[1], recovery), HttpStatusCode.OK);
        await Http.EnsureStatus(await app.ApproveAsync(agents[2], recovery), HttpStatusCode.OK);
        var exports = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ =>
            app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{recovery}/pkcs12", new { password = "recovered-password-1" })));
        Assert.Single(exports, e => e.StatusCode == HttpStatusCode.OK);

        using var scope = app.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.Equal("Npgsql.EntityFrameworkCore.PostgreSQL", db.Database.ProviderName);
        Assert.Equal(2, await db.RecoveryApprovals.CountAsync(a => a.RequestId == reEscrow));
        Assert.False(await db.RecoveryApprovals.AnyAsync(a => a.SealedShare != null));
        Assert.Equal(1, await db.KeyEscrows.CountAsync(e => e.SerialNumber == serial && e.SupersededAt == null));
        Assert.Equal(0, await scope.ServiceProvider.GetRequiredService<KeyRecovery>().PurgeExpiredSharesAsync(CancellationToken.None));
    }

    [Fact]
    public async Task An_expired_request_is_audited_once_when_several_nodes_find_it_at_once()
    {
        await app.AddThreeRecoveryAgentsAsync(_agentDir);
        var serial = (await app.EnrollServerKeyAsync($"pg.{Guid.NewGuid().ToString("N")[..8]}@example.test", "EC-P256"))
            .GetProperty("serialNumber").GetString()!;
        var requestId = await app.OpenRecoveryAsync(serial);
        using (var scope = app.Services.CreateScope())
            await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().RecoveryRequests.Where(r => r.Id == requestId)
                .ExecuteUpdateAsync(s => s.SetProperty(r => r.ExpiresAt, DateTimeOffset.UtcNow.AddMinutes(-1)));

        // Each node's RecoveryExpiryWorker runs the pass every minute, on its own connection.
        await Task.WhenAll(Enumerable.Range(0, 6).Select(async _ =>
        {
            using var scope = app.Services.CreateScope();
            await scope.ServiceProvider.GetRequiredService<KeyRecovery>().PurgeExpiredSharesAsync(CancellationToken.None);
        }));
        using (var scope = app.Services.CreateScope())
            await scope.ServiceProvider.GetRequiredService<KeyRecovery>().PurgeExpiredSharesAsync(CancellationToken.None);

        var audit = await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/audit?target=recovery:{requestId}&pageSize=100");
        Assert.Single(audit.EnumerateArray(), e => e.GetProperty("action").GetString() == "recovery.expired");
    }

    [Fact]
    public async Task Two_ready_re_escrows_of_one_key_at_once_move_it_once_and_the_other_is_refused()
    {
        var agents = new[] { await app.AddRecoveryAgentAsync(_agentDir), await app.AddRecoveryAgentAsync(_agentDir, "EC-P256") };
        await app.AddRecoveryAgentAsync(_agentDir); // N = 3
        var serial = (await app.EnrollServerKeyAsync($"pg.{Guid.NewGuid().ToString("N")[..8]}@example.test", "EC-P256"))
            .GetProperty("serialNumber").GetString()!;
        var requests = new[] { await app.OpenRecoveryAsync(serial, "re-escrow"), await app.OpenRecoveryAsync(serial, "re-escrow") };
        foreach (var request in requests)
            foreach (var agent in agents)
                await Http.EnsureStatus(await app.ApproveAsync(agent, request), HttpStatusCode.OK);

        // Each claimed its own request, then waited for the rows the other had changed (the old escrow's shares, the other
        // request): a deadlock, and one of them answered 500.
        var answers = await Task.WhenAll(requests.Select(id => app.Admin.PostAsync($"/api/v1/recoveries/{id}/re-escrow", null)));
        Assert.Single(answers, a => a.StatusCode == HttpStatusCode.OK);
        await Http.AssertProblem(Assert.Single(answers, a => a.StatusCode != HttpStatusCode.OK), HttpStatusCode.Conflict);
        using var scope = app.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.Equal(1, await db.KeyEscrows.CountAsync(e => e.SerialNumber == serial && e.SupersededAt == null));
    }

    [Fact]
    public async Task A_share_downloaded_through_one_node_is_sealed_to_the_one_request_key_every_node_opens()
    {
        var agents = await app.AddThreeRecoveryAgentsAsync(_agentDir);
        var serial = (await app.EnrollServerKeyAsync($"pg.{Guid.NewGuid().ToString("N")[..8]}@example.test", "EC-P256"))
            .GetProperty("serialNumber").GetString()!;
        var requestId = await app.OpenRecoveryAsync(serial);
        await using var nodeB = await CertPortalNode.StartedAsync("escrow-b", new Dictionary<string, string>
        {
            ["Database:Provider"] = "Postgres", ["Database:ConnectionString"] = app.ConnectionString,
            ["Issuance:PolicyOids:0"] = CertPortal.Authority.Oids.PolicyMailboxValidatedMultipurpose,
        });
        Agent OnB(Agent agent)
        {
            var client = nodeB.Client();
            client.DefaultRequestHeaders.Authorization = agent.Client.DefaultRequestHeaders.Authorization;
            return agent with { Client = client };
        }

        // The first downloads reach both nodes at once: one key for the request, whichever node made it.
        var downloads = await Task.WhenAll(
            agents[0].Client.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{requestId}/share"),
            OnB(agents[1]).Client.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{requestId}/share"));
        Assert.Equal(downloads[0].GetProperty("submissionCertificatePem").GetString(), downloads[1].GetProperty("submissionCertificatePem").GetString());

        // Sealed to what node B served, opened by node A; and the other way round.
        await Http.EnsureStatus(await RecoveryAgents.SubmitShareAsync(agents[0], requestId, await app.DecryptShareAsync(OnB(agents[0]), requestId)), HttpStatusCode.OK);
        var sealedOnA = await app.DecryptShareAsync(agents[1], requestId);
        await Http.EnsureStatus(await RecoveryAgents.SubmitShareAsync(OnB(agents[1]), requestId, sealedOnA), HttpStatusCode.OK);
        using var adminB = nodeB.Client(admin: true);
        await Http.EnsureStatus(await adminB.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/pkcs12", new { password = "recovered-password-1" }), HttpStatusCode.OK);

        // Completed: the key is erased, and what was submitted opens nowhere.
        var later = await app.OpenRecoveryAsync(serial);
        await OnB(agents[1]).Client.GetStringAsync($"/api/v1/recoveries/{later}/share");
        await Http.AssertProblem(await RecoveryAgents.SubmitShareAsync(OnB(agents[1]), later, sealedOnA), HttpStatusCode.UnprocessableEntity);
        using var scope = app.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.Null((await db.RecoveryRequests.AsNoTracking().SingleAsync(r => r.Id == requestId)).SealedSubmissionKey);
    }
}
