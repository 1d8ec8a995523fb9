using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using MimeKit;
using MimeKit.Cryptography;

namespace CertPortal.Tests.Escrow;

/// <summary>Server-generated encryption keys, escrowed 2-of-3 to agents, recovered through the API and
/// the agent CLI, and used by MimeKit on a message encrypted before the loss.</summary>
public sealed class KeyEscrowTests(EscrowApp app) : IClassFixture<EscrowApp>, IAsyncLifetime
{
    private List<Agent> _agents = [];

    public async Task InitializeAsync()
    {
        Tool.Require("openssl", "openssl");
        var existing = await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/escrow/policy");
        if (existing.GetProperty("activeAgents").GetInt32() < 3)
            _agents = [await app.AddAgentAsync("RSA-2048"), await app.AddAgentAsync("EC-P256"), await app.AddAgentAsync("RSA-2048")];
        else
            _agents = _shared!;
        _shared = _agents;
    }

    private static List<Agent>? _shared;

    public Task DisposeAsync() => Task.CompletedTask;

    private static string NewMailbox() => $"escrow.{Guid.NewGuid().ToString("N")[..8]}@example.test";

    [Theory]
    [InlineData("RSA-2048")]
    [InlineData("EC-P256")]
    public async Task Lost_key_is_recovered_with_M_agents_and_decrypts_old_mail_but_not_with_M_minus_1(string keyAlgorithm)
    {
        var email = NewMailbox();
        var enrolled = await app.EnrollServerKeyAsync(email, keyAlgorithm);
        Assert.True(enrolled.GetProperty("keyEscrowed").GetBoolean());
        var serial = enrolled.GetProperty("serialNumber").GetString()!;
        var original = Convert.FromBase64String(enrolled.GetProperty("pkcs12").GetString()!);

        // Mail encrypted to the certificate, readable with the original PKCS#12.
        var message = EncryptTo(enrolled.GetProperty("certificatePem").GetString()!);
        Assert.Equal("Board minutes", await DecryptWithAsync(original, EscrowApp.Pkcs12Password, message));

        var requestId = await app.OpenRecoveryAsync(serial);
        Assert.Equal(HttpStatusCode.OK, (await app.ApproveAsync(_agents[0], requestId)).StatusCode);
        // M-1 = 1 approval: nothing can be exported.
        var early = await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/pkcs12", new { password = "recovered-password-1" });
        await Http.AssertProblem(early, HttpStatusCode.Conflict);

        var second = await app.ApproveAsync(_agents[1], requestId);
        Assert.Equal("ready", (await second.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("status").GetString());
        var export = await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/pkcs12", new { password = "recovered-password-1" });
        await Http.EnsureStatus(export, HttpStatusCode.OK);
        var recovered = Convert.FromBase64String((await export.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pkcs12").GetString()!);
        Assert.Equal("Board minutes", await DecryptWithAsync(recovered, "recovered-password-1", message));

        // Returned once: a second export is refused, and the sealed shares are gone.
        await Http.AssertProblem(await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/pkcs12", new { password = "recovered-password-1" }),
            HttpStatusCode.Conflict);
        using (var scope = app.Services.CreateScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            Assert.All(await db.RecoveryApprovals.Where(a => a.RequestId == requestId).ToListAsync(), a => Assert.Null(a.SealedShare));
            // An approval that raced the export (it found the request open, then inserted after the export committed) leaves a
            // sealed share on a completed request: the purge erases it.
            var late = (await db.RecoveryApprovals.AsNoTracking().FirstAsync(a => a.RequestId == requestId)).AgentId;
            await db.RecoveryApprovals.Where(a => a.RequestId == requestId && a.AgentId == late).ExecuteUpdateAsync(u => u.SetProperty(a => a.SealedShare, new byte[64]));
            Assert.True(await scope.ServiceProvider.GetRequiredService<CertPortal.Escrow.KeyRecovery>().PurgeExpiredSharesAsync(default) >= 1);
            db.ChangeTracker.Clear();
            Assert.All(await db.RecoveryApprovals.Where(a => a.RequestId == requestId).ToListAsync(), a => Assert.Null(a.SealedShare));
        }
        var audit = await app.Admin.GetStringAsync($"/api/v1/audit?target=recovery:{requestId}");
        foreach (var action in new[] { "recovery.requested", "recovery.share-downloaded", "recovery.approved", "recovery.completed" })
            Assert.Contains(action, audit);
        Assert.Contains(_agents[0].Name, audit);
        Assert.Contains(_agents[1].Name, audit);
    }

    [Fact]
    public async Task M_minus_1_shares_do_not_reconstruct_the_data_key()
    {
        var secret = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
        var shares = CertPortal.Escrow.ShamirSecretSharing.Split(secret, 3, 5);
        Assert.Equal(secret, CertPortal.Escrow.ShamirSecretSharing.Combine([shares[0], shares[2], shares[4]]));
        Assert.NotEqual(secret, CertPortal.Escrow.ShamirSecretSharing.Combine([shares[0], shares[2]]));
    }

    [Fact]
    public async Task Tampered_envelope_is_detected_reported_and_audited_not_crashed_on()
    {
        var enrolled = await app.EnrollServerKeyAsync(NewMailbox());
        var serial = enrolled.GetProperty("serialNumber").GetString()!;
        await app.AlterStoredBytesAsync(db => db.KeyEscrows.Single(e => e.SerialNumber == serial), e => e.Envelope, ^5);
        var requestId = await app.OpenRecoveryAsync(serial);
        await app.ApproveAsync(_agents[0], requestId);
        await app.ApproveAsync(_agents[2], requestId);
        var export = await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/pkcs12", new { password = "recovered-password-1" });
        var problem = await Http.AssertProblem(export, HttpStatusCode.Conflict);
        Assert.Contains("integrity", problem.GetProperty("detail").GetString());
        Assert.Contains("recovery.failed", await app.Admin.GetStringAsync($"/api/v1/audit?target=recovery:{requestId}"));
    }

    [Fact]
    public async Task Tampered_encrypted_share_or_wrong_share_is_refused()
    {
        var serial = (await app.EnrollServerKeyAsync(NewMailbox())).GetProperty("serialNumber").GetString()!;
        var escrowId = await app.EscrowIdAsync(serial);
        // Inside the CBC ciphertext's last block: padding or content breaks.
        await app.AlterStoredBytesAsync(db => db.EscrowShares.Single(s => s.EscrowId == escrowId && s.AgentId == _agents[0].AgentId),
            s => s.EncryptedShare, ^3);
        var requestId = await app.OpenRecoveryAsync(serial);
        var r = await Record.ExceptionAsync(() => app.ApproveAsync(_agents[0], requestId));
        if (r is null)
        {
            // Decryption happened to succeed on garbage: the commitment check must then refuse it.
            var view = await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{requestId}");
            Assert.Equal(0, view.GetProperty("approvals").GetInt32());
        }
        else Assert.True(r.Message.Contains("cannot open the share"), r.Message);

        // A well-formed share that is not this agent's share for this key, sealed to this request: 422.
        var submission = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(
            (await _agents[1].Client.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{requestId}/share")).GetProperty("submissionCertificatePem").GetString());
        var wrong = await RecoveryAgents.SubmitShareAsync(_agents[1], requestId,
            Convert.ToBase64String(CertPortal.Escrow.SealedShare.Seal(requestId, new byte[33], submission)));
        Assert.Equal("Share does not match.", (await Http.AssertProblem(wrong, HttpStatusCode.UnprocessableEntity)).GetProperty("title").GetString());
        await Http.AssertProblem(await RecoveryAgents.SubmitShareAsync(_agents[1], requestId, "%%%"), HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task Signing_keys_are_never_generated_or_kept_by_the_server()
    {
        var email = NewMailbox();
        var token = await app.CreateTokenAsync(email, "signing");
        var refused = await app.Client.PostAsJsonAsync("/api/v1/enrollments",
            new { token = token.Token, keyAlgorithm = "EC-P256", pkcs12Password = EscrowApp.Pkcs12Password });
        await Http.AssertProblem(refused, HttpStatusCode.UnprocessableEntity);
        // The token was not spent by the refusal; a CSR enrollment works and leaves no key on the server.
        var issued = await app.EnrollAsync(token.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email));
        using var scope = app.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.False(await db.KeyEscrows.AnyAsync(e => e.SerialNumber == issued.SerialNumber));
        Assert.Equal(0, await db.KeyEscrows.Join(db.Certificates, e => e.SerialNumber, c => c.SerialNumber, (e, c) => c)
            .CountAsync(c => c.Profile == CertPortal.Authority.CertificateProfileName.Signing));
        Assert.Equal(0, await db.KeyEscrows.Join(db.Certificates, e => e.SerialNumber, c => c.SerialNumber, (e, c) => c)
            .CountAsync(c => c.Profile == CertPortal.Authority.CertificateProfileName.Dual));
    }

    [Fact]
    public async Task Concurrent_recoveries_and_duplicate_approvals_count_once_and_outsiders_are_refused()
    {
        var serials = new List<string>();
        for (var i = 0; i < 2; i++) serials.Add((await app.EnrollServerKeyAsync(NewMailbox(), "EC-P256")).GetProperty("serialNumber").GetString()!);
        var requests = await Task.WhenAll(serials.Select(s => app.OpenRecoveryAsync(s)));

        // The same agent approves the same request five times at once, and the other request meanwhile.
        var results = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ => app.ApproveAsync(_agents[0], requests[0]))
            .Append(app.ApproveAsync(_agents[0], requests[1])).Append(app.ApproveAsync(_agents[1], requests[1])));
        Assert.All(results, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        var first = await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{requests[0]}");
        Assert.Equal(1, first.GetProperty("approvals").GetInt32());
        Assert.Equal("open", first.GetProperty("status").GetString());
        Assert.Equal("ready", (await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{requests[1]}")).GetProperty("status").GetString());

        // Two exports at once: exactly one gets the key.
        var exports = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ =>
            app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{requests[1]}/pkcs12", new { password = "recovered-password-1" })));
        Assert.Single(exports, e => e.StatusCode == HttpStatusCode.OK);
        Assert.Single(exports, e => e.StatusCode == HttpStatusCode.Conflict);

        var (_, auditor) = await app.CreateAccountAsync("aud-" + Guid.NewGuid().ToString("N")[..6], "auditor");
        await Http.AssertProblem(await auditor.GetAsync($"/api/v1/recoveries/{requests[0]}/share"), HttpStatusCode.Forbidden);
        await Http.AssertProblem(await auditor.PostAsJsonAsync($"/api/v1/recoveries/{requests[0]}/approvals", new { share = "AA==" }), HttpStatusCode.Forbidden);
        // A recovery-agent account that is not registered as an agent of this escrow.
        var (_, unregistered) = await app.CreateAccountAsync("kra-x-" + Guid.NewGuid().ToString("N")[..6], "recovery-agent");
        await Http.AssertProblem(await unregistered.GetAsync($"/api/v1/recoveries/{requests[0]}/share"), HttpStatusCode.Forbidden);
        using var anonymous = new HttpClient { BaseAddress = new Uri(app.BaseUrl) };
        await Http.AssertProblem(await anonymous.GetAsync($"/api/v1/recoveries/{requests[0]}/share"), HttpStatusCode.Unauthorized);
    }

    [Fact]
    public async Task The_recovery_list_is_one_query_however_many_requests_it_shows()
    {
        var serial = (await app.EnrollServerKeyAsync(NewMailbox(), "EC-P256")).GetProperty("serialNumber").GetString()!;
        var requests = new[] { await app.OpenRecoveryAsync(serial), await app.OpenRecoveryAsync(serial), await app.OpenRecoveryAsync(serial) };
        await Http.EnsureStatus(await app.ApproveAsync(_agents[0], requests[1]), HttpStatusCode.OK);
        await Http.EnsureStatus(await app.ApproveAsync(_agents[1], requests[1]), HttpStatusCode.OK);
        await Http.EnsureStatus(await app.ApproveAsync(_agents[2], requests[2]), HttpStatusCode.OK);

        using var scope = app.Services.CreateScope();
        var counter = new CommandCounter();
        var connection = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().Database.GetConnectionString();
        await using var db = new SqliteCertPortalDbContext(new DbContextOptionsBuilder<SqliteCertPortalDbContext>()
            .UseSqlite(connection).AddInterceptors(counter).Options);
        var recovery = ActivatorUtilities.CreateInstance<CertPortal.Escrow.KeyRecovery>(scope.ServiceProvider, db);

        var list = await recovery.ListAsync(CancellationToken.None);
        Assert.Equal(1, counter.Commands);
        var views = requests.Select(id => list.Single(v => v.Id == id)).ToList();
        Assert.Equal([0, 2, 1], views.Select(v => v.Approvals));
        Assert.Equal(["open", "ready", "open"], views.Select(v => v.Status));
        Assert.Equal(new[] { _agents[0].Name, _agents[1].Name }.Order(), views[1].ApprovedBy.Order());
        Assert.Equal([_agents[2].Name], views[2].ApprovedBy);
        Assert.Equal(list.OrderByDescending(v => v.CreatedAt).Select(v => v.Id), list.Select(v => v.Id)); // newest first
    }

    private sealed class CommandCounter : Microsoft.EntityFrameworkCore.Diagnostics.DbCommandInterceptor
    {
        private int _commands;
        public int Commands => _commands;

        public override ValueTask<Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult<System.Data.Common.DbDataReader>> ReaderExecutingAsync(
            System.Data.Common.DbCommand command, Microsoft.EntityFrameworkCore.Diagnostics.CommandEventData eventData,
            Microsoft.EntityFrameworkCore.Diagnostics.InterceptionResult<System.Data.Common.DbDataReader> result, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref _commands);
            return base.ReaderExecutingAsync(command, eventData, result, cancellationToken);
        }
    }

    [Fact]
    public async Task Re_escrow_moves_a_key_to_the_current_agent_set()
    {
        var enrolled = await app.EnrollServerKeyAsync(NewMailbox());
        var serial = enrolled.GetProperty("serialNumber").GetString()!;
        var message = EncryptTo(enrolled.GetProperty("certificatePem").GetString()!);
        var newAgent = await app.AddAgentAsync("EC-P256");
        try
        {
            var reEscrow = await app.OpenRecoveryAsync(serial, "re-escrow");
            await app.ApproveAsync(_agents[0], reEscrow);
            await app.ApproveAsync(_agents[1], reEscrow);
            var moved = await app.Admin.PostAsync($"/api/v1/recoveries/{reEscrow}/re-escrow", null);
            await Http.EnsureStatus(moved, HttpStatusCode.OK);
            Assert.Contains(newAgent.Name, await moved.Content.ReadAsStringAsync());

            // The new agent can now take part; the key still decrypts the old message.
            var recovery = await app.OpenRecoveryAsync(serial);
            Assert.Equal(HttpStatusCode.OK, (await app.ApproveAsync(newAgent, recovery)).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await app.ApproveAsync(_agents[2], recovery)).StatusCode);
            var export = await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{recovery}/pkcs12", new { password = "recovered-password-2" });
            await Http.EnsureStatus(export, HttpStatusCode.OK);
            var pfx = Convert.FromBase64String((await export.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pkcs12").GetString()!);
            Assert.Equal("Board minutes", await DecryptWithAsync(pfx, "recovered-password-2", message));
        }
        finally
        {
            await app.Admin.DeleteAsync($"/api/v1/recovery-agents/{newAgent.AgentId}");
        }
    }

    private static byte[] EncryptTo(string certificatePem)
    {
        using var ctx = new TemporarySecureMimeContext();
        using var cert = X509Certificate2.CreateFromPem(certificatePem);
        var recipient = new CmsRecipient(cert) { EncryptionAlgorithms = [EncryptionAlgorithm.Aes256] };
        var entity = ApplicationPkcs7Mime.Encrypt(ctx, [recipient], new TextPart("plain") { Text = "Board minutes" });
        using var ms = new MemoryStream();
        entity.WriteTo(ms);
        return ms.ToArray();
    }

    private static async Task<string> DecryptWithAsync(byte[] pkcs12, string password, byte[] message)
    {
        using var ctx = new TemporarySecureMimeContext();
        await ctx.ImportAsync(new MemoryStream(pkcs12), password);
        var entity = (ApplicationPkcs7Mime)MimeEntity.Load(new MemoryStream(message));
        return ((TextPart)entity.Decrypt(ctx)).Text;
    }
}
