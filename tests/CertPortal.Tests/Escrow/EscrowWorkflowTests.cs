using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Escrow;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace CertPortal.Tests.Escrow;

/// <summary>An escrow service whose clock the tests move (recovery requests expire), with three agents:
/// one made with <c>certportal-kra create-agent</c> (passphrase-protected key) and two made with openssl.</summary>
public sealed class ClockedEscrowApp : EscrowApp
{
    // Ahead of the wall clock, so agent certificates openssl makes "now" are already valid to the service.
    public ClockedEscrowApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow.AddHours(1));

    public List<Agent> Agents { get; } = [];

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        Agents.Add(await AddCliAgentAsync("EC-P256"));
        Agents.Add(await AddAgentAsync("RSA-2048"));
        Agents.Add(await AddAgentAsync("EC-P256"));
    }

    public T InScope<T>(Func<CertPortalDbContext, T> query)
    {
        using var scope = Services.CreateScope();
        return query(scope.ServiceProvider.GetRequiredService<CertPortalDbContext>());
    }
}

public sealed class EscrowWorkflowTests(ClockedEscrowApp app) : IClassFixture<ClockedEscrowApp>
{
    private static string NewMailbox() => $"wf.{Guid.NewGuid().ToString("N")[..8]}@example.test";

    private async Task<string> EscrowedSerialAsync(string algorithm = "EC-P256") =>
        (await app.EnrollServerKeyAsync(NewMailbox(), algorithm)).GetProperty("serialNumber").GetString()!;

    private Task<HttpResponseMessage> ExportAsync(Guid requestId) =>
        app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/pkcs12", new { password = "recovered-password-1" });

    private List<RecoveryApproval> Approvals(Guid requestId) =>
        app.InScope(db => db.RecoveryApprovals.AsNoTracking().Where(a => a.RequestId == requestId).ToList());

    [Fact]
    public async Task Expired_request_refuses_approvals_and_export_and_its_submitted_shares_are_erased()
    {
        var requestId = await app.OpenRecoveryAsync(await EscrowedSerialAsync());
        await Http.EnsureStatus(await app.ApproveAsync(app.Agents[0], requestId), HttpStatusCode.OK);
        Assert.NotNull(Assert.Single(Approvals(requestId)).SealedShare);

        app.Clock!.Advance(TimeSpan.FromHours(72) + TimeSpan.FromMinutes(1));
        await Http.AssertProblem(await app.Agents[1].Client.GetAsync($"/api/v1/recoveries/{requestId}/share"), HttpStatusCode.Conflict);
        await Http.AssertProblem(await RecoveryAgents.SubmitShareAsync(app.Agents[1], requestId, "AAAA"), HttpStatusCode.Conflict);
        await Http.AssertProblem(await ExportAsync(requestId), HttpStatusCode.Conflict);
        await Http.AssertProblem(await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/cancel", new { reason = "too late" }), HttpStatusCode.Conflict);
        Assert.Equal("expired", (await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{requestId}")).GetProperty("status").GetString());

        using (var scope = app.Services.CreateScope())
            await scope.ServiceProvider.GetRequiredService<KeyRecovery>().PurgeExpiredSharesAsync(CancellationToken.None);
        Assert.Null(Assert.Single(Approvals(requestId)).SealedShare);
    }

    [Fact]
    public async Task Expiry_is_audited_once_by_whichever_expiry_pass_finds_it_first()
    {
        var serial = await EscrowedSerialAsync();
        var requestId = await app.OpenRecoveryAsync(serial);
        await Http.EnsureStatus(await app.ApproveAsync(app.Agents[0], requestId), HttpStatusCode.OK);
        app.Clock!.Advance(TimeSpan.FromHours(72) + TimeSpan.FromMinutes(1));

        // The pass runs before a request is opened and every minute in each node's RecoveryExpiryWorker.
        await app.OpenRecoveryAsync(serial);
        using (var scope = app.Services.CreateScope())
            for (var i = 0; i < 2; i++) await scope.ServiceProvider.GetRequiredService<KeyRecovery>().PurgeExpiredSharesAsync(CancellationToken.None);
        await app.OpenRecoveryAsync(serial);

        var audit = await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/audit?target=recovery:{requestId}&pageSize=100");
        var expired = Assert.Single(audit.EnumerateArray(), e => e.GetProperty("action").GetString() == "recovery.expired");
        Assert.Contains(serial, expired.GetProperty("details").GetString());
        Assert.Equal("expired", (await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{requestId}")).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Cancelled_request_erases_submitted_shares_and_goes_no_further()
    {
        var requestId = await app.OpenRecoveryAsync(await EscrowedSerialAsync());
        await Http.EnsureStatus(await app.ApproveAsync(app.Agents[0], requestId), HttpStatusCode.OK);
        await Http.AssertProblem(await app.Agents[1].Client.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/cancel", new { reason = "mine" }),
            HttpStatusCode.Forbidden);

        var cancelled = await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/cancel", new { reason = "opened by mistake" });
        await Http.EnsureStatus(cancelled, HttpStatusCode.OK);
        Assert.Equal("cancelled", (await cancelled.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("status").GetString());
        Assert.Null(Assert.Single(Approvals(requestId)).SealedShare);
        await Http.AssertProblem(await app.Agents[1].Client.GetAsync($"/api/v1/recoveries/{requestId}/share"), HttpStatusCode.Conflict);
        await Http.AssertProblem(await ExportAsync(requestId), HttpStatusCode.Conflict);
        await Http.AssertProblem(await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/cancel", new { }), HttpStatusCode.Conflict);
        await Http.AssertProblem(await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{Guid.NewGuid()}/cancel", new { }), HttpStatusCode.NotFound);
        Assert.Contains("recovery.cancelled", await app.Admin.GetStringAsync($"/api/v1/audit?target=recovery:{requestId}"));
    }

    [Fact]
    public async Task Altered_sealed_share_or_commitment_is_reported_and_audited_and_nothing_is_recovered()
    {
        // A submitted share, sealed while the request collects approvals, altered in the database.
        var requestId = await app.OpenRecoveryAsync(await EscrowedSerialAsync("RSA-2048"));
        await Http.EnsureStatus(await app.ApproveAsync(app.Agents[0], requestId), HttpStatusCode.OK);
        await Http.EnsureStatus(await app.ApproveAsync(app.Agents[1], requestId), HttpStatusCode.OK);
        await app.AlterStoredBytesAsync(db => db.RecoveryApprovals.First(a => a.RequestId == requestId), a => a.SealedShare!);
        var export = await ExportAsync(requestId);
        var problem = await Http.AssertProblem(export, HttpStatusCode.Conflict);
        Assert.Contains("integrity", problem.GetProperty("detail").GetString());
        Assert.DoesNotContain("pkcs12\"", await export.Content.ReadAsStringAsync());
        Assert.Contains("recovery.failed", await app.Admin.GetStringAsync($"/api/v1/audit?target=recovery:{requestId}"));

        // A stored commitment altered: the genuine share no longer matches and is refused (422), not counted.
        var serial = await EscrowedSerialAsync();
        var escrowId = await app.EscrowIdAsync(serial);
        var agentId = app.Agents[2].AgentId;
        await app.AlterStoredBytesAsync(db => db.EscrowShares.First(s => s.EscrowId == escrowId && s.AgentId == agentId), s => s.Commitment);
        var second = await app.OpenRecoveryAsync(serial);
        await Http.AssertProblem(await app.ApproveAsync(app.Agents[2], second), HttpStatusCode.UnprocessableEntity);
        Assert.Empty(Approvals(second));
        // Audited like every other integrity failure (docs/escrow.md, threat model): the refusal left no trace, neither of an
        // altered commitment nor of someone with an agent's API key submitting guesses.
        var refused = await app.Admin.GetStringAsync($"/api/v1/audit?target=recovery:{second}");
        Assert.Contains("recovery.failed", refused);
        Assert.Contains(app.Agents[2].Name, refused);

        // The stored threshold lowered to 1: one approval makes the request "ready", but one share rebuilds nothing.
        var third = await EscrowedSerialAsync();
        var thirdEscrow = await app.EscrowIdAsync(third);
        app.InScope(db => db.KeyEscrows.Where(e => e.Id == thirdEscrow).ExecuteUpdate(u => u.SetProperty(e => e.Threshold, 1)));
        var lowered = await app.OpenRecoveryAsync(third);
        await Http.EnsureStatus(await app.ApproveAsync(app.Agents[0], lowered), HttpStatusCode.OK);
        Assert.Contains("integrity", (await Http.AssertProblem(await ExportAsync(lowered), HttpStatusCode.Conflict)).GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Retired_agent_gets_no_share_of_new_escrows_but_can_still_approve_the_ones_it_holds()
    {
        var extra = await app.AddAgentAsync("RSA-2048");
        var before = await EscrowedSerialAsync();
        await Http.EnsureStatus(await app.Admin.DeleteAsync($"/api/v1/recovery-agents/{extra.AgentId}"), HttpStatusCode.OK);
        var after = await EscrowedSerialAsync();
        var afterId = await app.EscrowIdAsync(after);
        Assert.False(app.InScope(db => db.EscrowShares.Any(s => s.EscrowId == afterId && s.AgentId == extra.AgentId)));
        await Http.AssertProblem(await extra.Client.GetAsync($"/api/v1/recoveries/{await app.OpenRecoveryAsync(after)}/share"), HttpStatusCode.Forbidden);

        var requestId = await app.OpenRecoveryAsync(before);
        await Http.EnsureStatus(await app.ApproveAsync(extra, requestId), HttpStatusCode.OK);
        await Http.EnsureStatus(await app.ApproveAsync(app.Agents[0], requestId), HttpStatusCode.OK);
        await Http.EnsureStatus(await ExportAsync(requestId), HttpStatusCode.OK);
    }

    [Fact]
    public async Task Re_escrow_seals_the_key_under_a_new_data_key_so_the_old_shares_open_nothing()
    {
        var serial = await EscrowedSerialAsync("RSA-2048");
        var oldEscrow = await app.EscrowIdAsync(serial);
        var pending = await app.OpenRecoveryAsync(serial);
        await Http.EnsureStatus(await app.ApproveAsync(app.Agents[2], pending), HttpStatusCode.OK);

        var reEscrow = await app.OpenRecoveryAsync(serial, "re-escrow");
        var oldShares = new List<string>();
        foreach (var agent in app.Agents.Take(2))
        {
            oldShares.Add(await app.DecryptShareAsync(agent, reEscrow, plaintext: true));
            await Http.EnsureStatus(await app.ApproveAsync(agent, reEscrow), HttpStatusCode.OK);
        }
        await Http.AssertProblem(await ExportAsync(reEscrow), HttpStatusCode.Conflict); // a re-escrow request exports nothing
        await Http.EnsureStatus(await app.Admin.PostAsync($"/api/v1/recoveries/{reEscrow}/re-escrow", null), HttpStatusCode.OK);
        await Http.AssertProblem(await app.Admin.PostAsync($"/api/v1/recoveries/{reEscrow}/re-escrow", null), HttpStatusCode.Conflict);

        var newEscrow = await app.EscrowIdAsync(serial);
        Assert.NotEqual(oldEscrow, newEscrow);
        var (old, fresh, cert) = app.InScope(db => (
            db.KeyEscrows.AsNoTracking().Single(e => e.Id == oldEscrow),
            db.KeyEscrows.AsNoTracking().Single(e => e.Id == newEscrow),
            db.Certificates.AsNoTracking().Single(c => c.SerialNumber == serial).Der));
        Assert.Empty(old.Envelope);
        Assert.NotNull(old.SupersededAt);
        Assert.False(app.InScope(db => db.EscrowShares.Any(s => s.EscrowId == oldEscrow)));
        Assert.Equal(3, app.InScope(db => db.EscrowShares.Count(s => s.EscrowId == newEscrow)));

        // Shares an agent kept from before (M of them) rebuild the old data key, which opens nothing now.
        var oldDataKey = ShamirSecretSharing.Combine(oldShares.Select(Convert.FromBase64String).ToList());
        using var certificate = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(cert);
        Assert.Throws<EscrowIntegrityException>(() => KeyEnvelope.Open(fresh.Envelope, oldDataKey, KeyEnvelopeBinding.ForCertificate(certificate)));

        // The request left open on the old escrow can never complete: it was cancelled and its share erased.
        Assert.Equal("cancelled", (await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{pending}")).GetProperty("status").GetString());
        Assert.Null(Assert.Single(Approvals(pending)).SealedShare);
        // Its own audit trail says so (it ended at its approval: an auditor could not tell why it never completed).
        var pendingAudit = await app.Admin.GetStringAsync($"/api/v1/audit?target=recovery:{pending}");
        Assert.Contains("recovery.cancelled", pendingAudit);
        Assert.Contains(reEscrow.ToString(), pendingAudit);
        // The key is recoverable from the new shares.
        var recovery = await app.OpenRecoveryAsync(serial);
        await Http.EnsureStatus(await app.ApproveAsync(app.Agents[1], recovery), HttpStatusCode.OK);
        await Http.EnsureStatus(await app.ApproveAsync(app.Agents[2], recovery), HttpStatusCode.OK);
        await Http.EnsureStatus(await ExportAsync(recovery), HttpStatusCode.OK);
        Assert.Contains("key.re-escrowed", await app.Admin.GetStringAsync($"/api/v1/audit?target=recovery:{reEscrow}"));
    }

    [Fact]
    public async Task Agent_registration_refuses_non_agents_unsuitable_certificates_and_a_key_already_registered()
    {
        var (agentAccount, _) = await app.CreateAccountAsync("kra-dup-" + Guid.NewGuid().ToString("N")[..6], "recovery-agent");
        var (auditorAccount, _) = await app.CreateAccountAsync("aud-" + Guid.NewGuid().ToString("N")[..6], "auditor");
        var taken = File.ReadAllText(Path.ChangeExtension(app.Agents[1].KeyFile, ".pem"));
        var duplicate = await Http.AssertProblem(
            await app.Admin.PostAsJsonAsync("/api/v1/recovery-agents", new { accountId = agentAccount, certificatePem = taken }), HttpStatusCode.Conflict);
        Assert.Contains(app.Agents[1].Name, duplicate.GetProperty("detail").GetString());
        await Http.AssertProblem(await app.Admin.PostAsJsonAsync("/api/v1/recovery-agents", new { accountId = auditorAccount, certificatePem = taken }),
            HttpStatusCode.UnprocessableEntity);
        await Http.AssertProblem(await app.Admin.PostAsJsonAsync("/api/v1/recovery-agents", new { accountId = agentAccount, certificatePem = "not a certificate" }),
            HttpStatusCode.UnprocessableEntity);
        // A signing-only certificate cannot receive an encrypted share.
        using var dir = new ToolDir("kra-sign");
        Tool.Run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir.File("k.pem"), "-out", dir.File("c.pem"), "-days", "30",
            "-subj", "/CN=sign only", "-addext", "keyUsage=critical,digitalSignature"]).EnsureSuccess();
        var unsuitable = await Http.AssertProblem(await app.Admin.PostAsJsonAsync("/api/v1/recovery-agents",
            new { accountId = agentAccount, certificatePem = File.ReadAllText(dir.File("c.pem")) }), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("keyEncipherment", unsuitable.GetProperty("detail").GetString());
        await Http.AssertProblem(await app.Agents[0].Client.PostAsJsonAsync("/api/v1/recovery-agents", new { accountId = agentAccount, certificatePem = taken }),
            HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task Agent_registration_compares_keys_however_they_are_encoded_and_refuses_keys_that_cannot_be_imported()
    {
        var (agentAccount, _) = await app.CreateAccountAsync("kra-enc-" + Guid.NewGuid().ToString("N")[..6], "recovery-agent");
        Task<HttpResponseMessage> RegisterAsync(PublicKey key) =>
            app.Admin.PostAsJsonAsync("/api/v1/recovery-agents", new { accountId = agentAccount, certificatePem = AgentCertificatePem(key) });

        // An agent's RSA key again, its algorithm's NULL parameters left out (RFC 3279 asks for them; a sloppy encoder omits
        // them): other bytes, the same key, so one person would hold two shares.
        var agent = app.Agents[1]; // RSA-2048
        using var registered = X509Certificate2.CreateFromPem(File.ReadAllText(Path.ChangeExtension(agent.KeyFile, ".pem")));
        using var taken = registered.GetRSAPublicKey()!;
        var withoutNull = new PublicKey(new Oid("1.2.840.113549.1.1.1"), null, new AsnEncodedData(taken.ExportRSAPublicKey()));
        Assert.False(withoutNull.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(registered.PublicKey.ExportSubjectPublicKeyInfo()));
        var duplicate = await Http.AssertProblem(await RegisterAsync(withoutNull), HttpStatusCode.Conflict);
        Assert.Contains(agent.Name, duplicate.GetProperty("detail").GetString());

        // Keys whose bytes do not import: an RSA key without its exponent, and a P-256 point that is not on the curve. Both answered
        // 500, or (the point) registered an agent to which no share could ever be encrypted.
        var truncatedRsa = new PublicKey(new Oid("1.2.840.113549.1.1.1"), new AsnEncodedData([0x05, 0x00]), new AsnEncodedData([0x30, 0x03, 0x02, 0x01, 0x05]));
        Assert.Contains("cannot be read", (await Http.AssertProblem(await RegisterAsync(truncatedRsa), HttpStatusCode.UnprocessableEntity)).ToString());
        var offCurve = new PublicKey(new Oid("1.2.840.10045.2.1"), new AsnEncodedData([0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]),
            new AsnEncodedData([0x04, .. Enumerable.Repeat((byte)0x01, 64)]));
        Assert.Contains("not a point", (await Http.AssertProblem(await RegisterAsync(offCurve), HttpStatusCode.UnprocessableEntity)).ToString());

        // A keyUsage whose value is an INTEGER, not a BIT STRING: .NET decodes it only when it is read (was a 500).
        using var rsa = RSA.Create(2048);
        var badKeyUsage = new X509Extension(new Oid("2.5.29.15"), new byte[] { 0x02, 0x01, 0x05 }, critical: true);
        var r = await app.Admin.PostAsJsonAsync("/api/v1/recovery-agents",
            new { accountId = agentAccount, certificatePem = AgentCertificatePem(new PublicKey(rsa), badKeyUsage) });
        Assert.Contains("cannot be decoded", (await Http.AssertProblem(r, HttpStatusCode.UnprocessableEntity)).ToString());
    }

    /// <summary>A certificate for <paramref name="key"/>, encoded as given, signed by a throwaway RSA key (agent certificates are not
    /// chain-checked).</summary>
    private static string AgentCertificatePem(PublicKey key, X509Extension? extension = null)
    {
        using var signer = RSA.Create(2048);
        var request = new CertificateRequest(new X500DistinguishedName("CN=agent key encoding"), key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        if (extension is not null) request.CertificateExtensions.Add(extension);
        var now = DateTimeOffset.UtcNow;
        using var cert = request.Create(new X500DistinguishedName("CN=agent key encoding"), X509SignatureGenerator.CreateForRSA(signer, RSASignaturePadding.Pkcs1),
            now.AddMinutes(-1), now.AddDays(30), [0x01, 0x02]);
        return cert.ExportCertificatePem();
    }

    [Fact]
    public async Task A_recovery_reason_with_a_control_character_is_refused()
    {
        // It goes into the audit log as it is; PostgreSQL cannot store a NUL at all (a 500 after another write had committed).
        var serial = await EscrowedSerialAsync();
        foreach (var reason in new[] { "lost\u0000laptop", "lost laptop\nforged: line" })
        {
            var r = await app.Admin.PostAsJsonAsync("/api/v1/recoveries", new { serialNumber = serial, reason });
            Assert.Contains("printable", (await Http.AssertProblem(r, HttpStatusCode.UnprocessableEntity)).ToString());
        }
    }

    [Fact]
    public async Task M_N_and_key_generation_policy_are_managed_through_the_admin_API()
    {
        var policy = await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/escrow/policy");
        Assert.Equal(2, policy.GetProperty("threshold").GetInt32());
        Assert.Equal(3, policy.GetProperty("minimumAgents").GetInt32());
        try
        {
            await Http.AssertProblem(await app.Admin.PutAsJsonAsync("/api/v1/escrow/policy", new { threshold = 3, minimumAgents = 2 }),
                HttpStatusCode.UnprocessableEntity);
            await Http.AssertProblem(await app.Admin.PutAsJsonAsync("/api/v1/escrow/policy", new { threshold = 1 }), HttpStatusCode.UnprocessableEntity);
            await Http.AssertProblem(await app.Admin.PutAsJsonAsync("/api/v1/escrow/policy", new { encryptionKeyGeneration = "Sometimes" }),
                HttpStatusCode.UnprocessableEntity);
            var (_, auditor) = await app.CreateAccountAsync("aud-" + Guid.NewGuid().ToString("N")[..6], "auditor");
            await Http.AssertProblem(await auditor.PutAsJsonAsync("/api/v1/escrow/policy", new { minimumAgents = 9 }), HttpStatusCode.Forbidden);

            // N above the active agents: nothing is generated and the token is not spent.
            await Http.EnsureStatus(await app.Admin.PutAsJsonAsync("/api/v1/escrow/policy", new { minimumAgents = 9 }), HttpStatusCode.OK);
            var token = await app.CreateTokenAsync(NewMailbox(), "encryption");
            var body = new { token = token.Token, keyAlgorithm = "EC-P256", pkcs12Password = EscrowApp.Pkcs12Password };
            var tooFew = await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/enrollments", body), HttpStatusCode.Conflict);
            Assert.Contains("at least 9", tooFew.GetProperty("detail").GetString());

            // Refused for the encryption profile: server generation is refused; Required: CSRs are refused.
            await Http.EnsureStatus(await app.Admin.PutAsJsonAsync("/api/v1/escrow/policy",
                new { minimumAgents = 3, encryptionKeyGeneration = "Refused" }), HttpStatusCode.OK);
            await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/enrollments", body), HttpStatusCode.UnprocessableEntity);
            await Http.EnsureStatus(await app.Admin.PutAsJsonAsync("/api/v1/escrow/policy", new { encryptionKeyGeneration = "Required" }), HttpStatusCode.OK);
            var csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(token.Email);
            await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, csr), HttpStatusCode.UnprocessableEntity);
            // A CSR and a server-key request at once is ambiguous.
            await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/enrollments",
                new { token = token.Token, csr, keyAlgorithm = "EC-P256", pkcs12Password = EscrowApp.Pkcs12Password }), HttpStatusCode.UnprocessableEntity);
            await Http.EnsureStatus(await app.Client.PostAsJsonAsync("/api/v1/enrollments", body), HttpStatusCode.Created);
            Assert.Contains("escrow.policy-changed", await app.Admin.GetStringAsync("/api/v1/audit?target=escrow-policy"));

            // Dual keys: refused by default; where policy allows, generated and escrowed like encryption keys.
            var dualToken = await app.CreateTokenAsync(NewMailbox(), "dual");
            var dualBody = new { token = dualToken.Token, keyAlgorithm = "RSA-2048", pkcs12Password = EscrowApp.Pkcs12Password };
            await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/enrollments", dualBody), HttpStatusCode.UnprocessableEntity);
            await Http.EnsureStatus(await app.Admin.PutAsJsonAsync("/api/v1/escrow/policy", new { dualKeyGeneration = "Allowed" }), HttpStatusCode.OK);
            var dual = await app.Client.PostAsJsonAsync("/api/v1/enrollments", dualBody);
            await Http.EnsureStatus(dual, HttpStatusCode.Created);
            Assert.True((await dual.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("keyEscrowed").GetBoolean());
            // Required for dual keys only: a dual token's CSR is refused; an encryption token's (Allowed) and a signing token's
            // are issued.
            await Http.EnsureStatus(await app.Admin.PutAsJsonAsync("/api/v1/escrow/policy",
                new { encryptionKeyGeneration = "Allowed", dualKeyGeneration = "Required" }), HttpStatusCode.OK);
            var dualCsr = await app.CreateTokenAsync(NewMailbox(), "dual");
            await Http.AssertProblem(await app.PostEnrollmentAsync(dualCsr.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(dualCsr.Email)),
                HttpStatusCode.UnprocessableEntity);
            var encryptionCsr = await app.CreateTokenAsync(NewMailbox(), "encryption");
            await Http.EnsureStatus(await app.PostEnrollmentAsync(encryptionCsr.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(encryptionCsr.Email)),
                HttpStatusCode.Created);
            var signingCsr = await app.CreateTokenAsync(NewMailbox(), "signing");
            await Http.EnsureStatus(await app.PostEnrollmentAsync(signingCsr.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(signingCsr.Email)),
                HttpStatusCode.Created);
        }
        finally
        {
            await app.Admin.PutAsJsonAsync("/api/v1/escrow/policy",
                new { threshold = 2, minimumAgents = 3, encryptionKeyGeneration = "Allowed", dualKeyGeneration = "Refused" });
        }
    }
}
