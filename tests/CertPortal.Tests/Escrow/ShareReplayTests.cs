using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Escrow;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Escrow;

/// <summary>What an agent submits approves one recovery request and nothing else: a submission seen once (shell history,
/// the process list, a TLS-terminating proxy's body log) is worth nothing to whoever later holds the agent's API key.</summary>
public sealed class ShareReplayTests(EscrowApp app) : IClassFixture<EscrowApp>, IAsyncLifetime
{
    private List<Agent> _agents = [];

    public async Task InitializeAsync()
    {
        Tool.Require("openssl", "openssl");
        _agents = [await app.AddCliAgentAsync("EC-P256"), await app.AddAgentAsync("RSA-2048"), await app.AddAgentAsync("EC-P256")];
    }

    public Task DisposeAsync() => Task.CompletedTask;

    private async Task<string> EscrowedSerialAsync() =>
        (await app.EnrollServerKeyAsync($"replay.{Guid.NewGuid().ToString("N")[..8]}@example.test", "EC-P256")).GetProperty("serialNumber").GetString()!;

    private async Task<int> ApprovalsAsync(Guid requestId) =>
        (await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{requestId}")).GetProperty("approvals").GetInt32();

    [Fact]
    public async Task A_submission_for_one_request_replayed_with_the_agents_credentials_to_a_later_request_of_the_same_escrow_counts_for_nothing()
    {
        var serial = await EscrowedSerialAsync();
        var agent = _agents[0];
        var first = await app.OpenRecoveryAsync(serial);
        // What `certportal-kra decrypt-share` printed, as the documented `SHARE=$(...)` leaves it in shell history.
        var captured = await app.DecryptShareAsync(agent, first);
        await Http.EnsureStatus(await RecoveryAgents.SubmitShareAsync(agent, first, captured), HttpStatusCode.OK);
        await Http.EnsureStatus(await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{first}/cancel", new { reason = "test" }), HttpStatusCode.OK);

        // Later, someone with the agent's API key (not its private key) replays it to a new request of the same key.
        var later = await app.OpenRecoveryAsync(serial);
        var replay = await RecoveryAgents.SubmitShareAsync(agent, later, captured);
        await Http.AssertProblem(replay, HttpStatusCode.UnprocessableEntity);
        Assert.Equal(0, await ApprovalsAsync(later));
    }

    [Fact]
    public async Task A_sealed_share_replayed_to_a_later_request_whose_key_exists_is_refused_and_audited()
    {
        var serial = await EscrowedSerialAsync();
        var agent = _agents[1];
        var first = await app.OpenRecoveryAsync(serial);
        var captured = await app.DecryptShareAsync(agent, first);
        await Http.EnsureStatus(await RecoveryAgents.SubmitShareAsync(agent, first, captured), HttpStatusCode.OK);
        await Http.EnsureStatus(await RecoveryAgents.SubmitShareAsync(_agents[2], first, await app.DecryptShareAsync(_agents[2], first)), HttpStatusCode.OK);
        await Http.EnsureStatus(await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{first}/pkcs12", new { password = "recovered-password-1" }), HttpStatusCode.OK);

        var later = await app.OpenRecoveryAsync(serial);
        // The later request's key exists (anyone with the agent's API key can download the share): the old submission still does not open.
        await agent.Client.GetStringAsync($"/api/v1/recoveries/{later}/share");
        var replay = await Http.AssertProblem(await RecoveryAgents.SubmitShareAsync(agent, later, captured), HttpStatusCode.UnprocessableEntity);
        Assert.Equal("Not sealed for this request.", replay.GetProperty("title").GetString());
        Assert.Equal(0, await ApprovalsAsync(later));
        var audit = await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/audit?target=recovery:{later}&pageSize=100");
        Assert.Contains(audit.EnumerateArray(), e => e.GetProperty("action").GetString() == "recovery.failed" && e.GetProperty("actor").GetString() == agent.Name);

        // Completed, the first request's key is erased: a submission captured on its way in opens nowhere, even with the session key.
        using var scope = app.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.Null((await db.RecoveryRequests.AsNoTracking().SingleAsync(r => r.Id == first)).SealedSubmissionKey);
        Assert.NotNull((await db.RecoveryRequests.AsNoTracking().SingleAsync(r => r.Id == later)).SealedSubmissionKey);
    }

    [Fact]
    public async Task A_plaintext_share_as_old_CLIs_printed_it_is_refused_and_counts_for_nothing()
    {
        var serial = await EscrowedSerialAsync();
        var requestId = await app.OpenRecoveryAsync(serial);
        var plaintext = await app.DecryptShareAsync(_agents[0], requestId, plaintext: true);
        var refused = await Http.AssertProblem(await RecoveryAgents.SubmitPlaintextShareAsync(_agents[0], requestId, plaintext), HttpStatusCode.UnprocessableEntity);
        Assert.Equal("Plaintext share refused.", refused.GetProperty("title").GetString());
        Assert.Equal(0, await ApprovalsAsync(requestId));
        var audit = await app.Admin.GetStringAsync($"/api/v1/audit?target=recovery:{requestId}&pageSize=100");
        Assert.Contains("A plaintext share was submitted", audit);
    }

    [Fact]
    public async Task A_share_sealed_to_this_requests_key_but_naming_another_request_is_refused()
    {
        var serial = await EscrowedSerialAsync();
        var requestId = await app.OpenRecoveryAsync(serial);
        var agent = _agents[0];
        var share = Convert.FromBase64String(await app.DecryptShareAsync(agent, requestId, plaintext: true));
        var download = await agent.Client.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{requestId}/share");
        using var certificate = X509Certificate2.CreateFromPem(download.GetProperty("submissionCertificatePem").GetString());
        Assert.Equal(requestId, SealedShare.RequestIdOf(certificate));

        var otherId = Guid.CreateVersion7();
        var misnamed = await Http.AssertProblem(await RecoveryAgents.SubmitShareAsync(agent, requestId,
            Convert.ToBase64String(SealedShare.Seal(otherId, share, certificate))), HttpStatusCode.UnprocessableEntity);
        Assert.Contains(otherId.ToString(), misnamed.GetProperty("detail").GetString());
        Assert.Equal(0, await ApprovalsAsync(requestId));
        // The same share sealed for this request counts.
        await Http.EnsureStatus(await RecoveryAgents.SubmitShareAsync(agent, requestId,
            Convert.ToBase64String(SealedShare.Seal(requestId, share, certificate))), HttpStatusCode.OK);
        Assert.Equal(1, await ApprovalsAsync(requestId));
    }

    [Fact]
    public async Task A_submission_certificate_swapped_in_the_database_is_refused_before_an_agent_seals_to_it()
    {
        var serial = await EscrowedSerialAsync();
        var requestId = await app.OpenRecoveryAsync(serial);
        await _agents[1].Client.GetStringAsync($"/api/v1/recoveries/{requestId}/share");
        // Write access to the database: a certificate of someone else's key in place of the request's (one byte is enough to tell).
        await app.AlterStoredBytesAsync(db => db.RecoveryRequests.Single(r => r.Id == requestId), r => r.SubmissionCertificate!);
        await Http.AssertProblem(await _agents[2].Client.GetAsync($"/api/v1/recoveries/{requestId}/share"), HttpStatusCode.Conflict);
        var audit = await app.Admin.GetStringAsync($"/api/v1/audit?target=recovery:{requestId}&pageSize=100");
        Assert.Contains("submission key or certificate was altered", audit);
    }

    /// <summary>An agent without certportal-kra, with OpenSSL alone: decrypt the share, build the DER content, encrypt it to the
    /// request's certificate (docs/escrow.md shows these commands).</summary>
    [Fact]
    public async Task An_agent_with_only_openssl_seals_a_share_the_server_accepts_and_the_key_is_recovered()
    {
        var serial = await EscrowedSerialAsync();
        var requestId = await app.OpenRecoveryAsync(serial);
        using var dir = new ToolDir("openssl-agent");
        foreach (var agent in _agents.Skip(1)) // made by openssl: an RSA and an EC agent
        {
            // The one file the docs save: the encrypted share, then the request's certificate.
            var download = await agent.Client.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{requestId}/share");
            var sharePem = dir.Write($"{agent.Name}.share.pem",
                download.GetProperty("encryptedSharePem").GetString()! + download.GetProperty("submissionCertificatePem").GetString()!);
            Tool.Run("openssl", ["cms", "-decrypt", "-inform", "PEM", "-in", sharePem, "-inkey", agent.KeyFile, "-binary", "-out", dir.File($"{agent.Name}.share")]).EnsureSuccess();
            var submissionCert = dir.File($"{agent.Name}.request.pem");
            Tool.Run("openssl", ["x509", "-in", sharePem, "-out", submissionCert]).EnsureSuccess();
            var hex = Convert.ToHexString(File.ReadAllBytes(dir.File($"{agent.Name}.share")));
            var conf = dir.Write($"{agent.Name}.cnf", $"asn1=SEQUENCE:sealed\n[sealed]\nversion=INTEGER:1\nrequestId=UTF8:{requestId}\nshare=FORMAT:HEX,OCTETSTRING:{hex}\n");
            Tool.Run("openssl", ["asn1parse", "-genconf", conf, "-noout", "-out", dir.File($"{agent.Name}.der")]).EnsureSuccess();
            var sealedPem = Tool.Run("openssl", ["cms", "-encrypt", "-binary", "-aes256", "-in", dir.File($"{agent.Name}.der"), "-outform", "PEM", submissionCert])
                .EnsureSuccess().Stdout;
            await Http.EnsureStatus(await RecoveryAgents.SubmitShareAsync(agent, requestId, sealedPem), HttpStatusCode.OK);
        }
        Assert.Equal(2, await ApprovalsAsync(requestId));
        await Http.EnsureStatus(await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/pkcs12", new { password = "recovered-password-1" }), HttpStatusCode.OK);
    }
}

/// <summary>An installation that still takes plaintext shares from agents whose CLI predates sealed shares.</summary>
public sealed class PlaintextSharesEscrowApp : EscrowApp
{
    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?> { ["Escrow:AcceptPlaintextShares"] = "true" };
}

public sealed class PlaintextSharesOptionTests(PlaintextSharesEscrowApp app) : IClassFixture<PlaintextSharesEscrowApp>
{
    [Fact]
    public async Task With_AcceptPlaintextShares_a_plaintext_share_approves_and_a_sealed_one_still_does()
    {
        Tool.Require("openssl", "openssl");
        var agents = new[] { await app.AddAgentAsync("RSA-2048"), await app.AddCliAgentAsync("EC-P256"), await app.AddAgentAsync("EC-P256") };
        var serial = (await app.EnrollServerKeyAsync($"old-cli.{Guid.NewGuid().ToString("N")[..8]}@example.test", "EC-P256"))
            .GetProperty("serialNumber").GetString()!;
        var requestId = await app.OpenRecoveryAsync(serial);
        await Http.EnsureStatus(await RecoveryAgents.SubmitPlaintextShareAsync(agents[0], requestId,
            await app.DecryptShareAsync(agents[0], requestId, plaintext: true)), HttpStatusCode.OK);
        await Http.AssertProblem(await RecoveryAgents.SubmitPlaintextShareAsync(agents[1], requestId, Convert.ToBase64String(new byte[33])),
            HttpStatusCode.UnprocessableEntity);
        await Http.EnsureStatus(await app.ApproveAsync(agents[1], requestId), HttpStatusCode.OK);
        await Http.EnsureStatus(await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/pkcs12", new { password = "recovered-password-1" }), HttpStatusCode.OK);
    }
}
