using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Escrow;

/// <summary>A key recovery agent: an account, a key pair made with openssl on "their machine", and
/// the registered certificate.</summary>
public sealed record Agent(Guid AgentId, string Name, HttpClient Client, string KeyFile, string? PassphraseFile = null);

public class EscrowApp : CertPortalApp
{
    private readonly ToolDir _agentDir = new("kra-agents");

    public Task<Agent> AddAgentAsync(string algorithm = "RSA-2048") => this.AddRecoveryAgentAsync(_agentDir, algorithm);

    /// <summary>An agent made the way the README tells agents to: <c>certportal-kra create-agent</c> with a
    /// passphrase-protected key, registered by the admin from the certificate it wrote.</summary>
    public async Task<Agent> AddCliAgentAsync(string algorithm = "EC-P256")
    {
        var name = "kra-cli-" + Guid.NewGuid().ToString("N")[..8];
        var (accountId, client) = await CreateAccountAsync(name, "recovery-agent");
        var passphraseFile = _agentDir.Write(name + ".pass", "agent passphrase " + name + "\n");
        var keyFile = _agentDir.File(name + ".key");
        var certFile = _agentDir.File(name + ".pem");
        var created = RunKra("create-agent", "--name", name, "--algorithm", algorithm, "--key-out", keyFile, "--cert-out", certFile,
            "--passphrase-file", passphraseFile).EnsureSuccess();
        var r = await Admin.PostAsJsonAsync("/api/v1/recovery-agents", new { accountId, certificatePem = File.ReadAllText(certFile) });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        var registered = await r.Content.ReadFromJsonAsync<JsonElement>();
        // The fingerprint the agent reads out to the admin is the one the server registered.
        Assert.Contains(registered.GetProperty("certificateSha256").GetString()!, created.Stdout);
        return new Agent(registered.GetProperty("id").GetGuid(), name, client, keyFile, passphraseFile);
    }

    /// <summary>What an agent does: download the encrypted share, decrypt it with the CLI and their key, submit it.</summary>
    public async Task<HttpResponseMessage> ApproveAsync(Agent agent, Guid requestId) =>
        await SubmitShareAsync(agent, requestId, await DecryptShareAsync(agent, requestId));

    /// <summary>Downloads the agent's encrypted share and decrypts it with <c>certportal-kra decrypt-share</c>.</summary>
    public async Task<string> DecryptShareAsync(Agent agent, Guid requestId)
    {
        var share = await agent.Client.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{requestId}/share");
        var shareFile = _agentDir.Write($"{agent.Name}-{requestId:N}.pem", share.GetProperty("encryptedSharePem").GetString()!);
        string[] passphrase = agent.PassphraseFile is null ? [] : ["--passphrase-file", agent.PassphraseFile];
        return RunKra(["decrypt-share", "--share", shareFile, "--key", agent.KeyFile, .. passphrase]).EnsureSuccess().Stdout.Trim();
    }

    public static Task<HttpResponseMessage> SubmitShareAsync(Agent agent, Guid requestId, string share) =>
        agent.Client.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/approvals", new { share });

    public static Tool.Result RunKra(params string[] args) => RunKraWith(null, args);

    public static Tool.Result RunKraWith(string? stdin, params string[] args) =>
        Tool.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "certportal-kra.dll"), .. args], stdin: stdin,
            env: new Dictionary<string, string> { ["CERTPORTAL_KRA_PASSPHRASE"] = "" });

    public async Task<Guid> OpenRecoveryAsync(string serial, string purpose = "recover")
    {
        var r = await Admin.PostAsJsonAsync("/api/v1/recoveries", new { serialNumber = serial, reason = "lost laptop, ticket 4711", purpose });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        return (await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetGuid();
    }

    public async Task<JsonElement> EnrollServerKeyAsync(string email, string keyAlgorithm = "RSA-2048", string? pkcs12Format = null, string profile = "encryption")
    {
        var token = await CreateTokenAsync(email, profile);
        var r = await Client.PostAsJsonAsync("/api/v1/enrollments", new { token = token.Token, keyAlgorithm, pkcs12Password = Pkcs12Password, pkcs12Format });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        return await r.Content.ReadFromJsonAsync<JsonElement>();
    }

    public const string Pkcs12Password = "correct horse battery staple";

    public async Task<Guid> EscrowIdAsync(string serial)
    {
        using var scope = Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortal.Data.CertPortalDbContext>();
        return await db.KeyEscrows.Where(e => e.SerialNumber == serial && e.SupersededAt == null).Select(e => e.Id).SingleAsync();
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        _agentDir.Dispose();
    }
}

public static class RecoveryAgents
{
    /// <summary>Registers a recovery agent whose key pair openssl made "on the agent's machine" (in <paramref name="agentDir"/>).</summary>
    public static async Task<Agent> AddRecoveryAgentAsync(this CertPortalApp app, ToolDir agentDir, string algorithm = "RSA-2048")
    {
        var name = "kra-" + Guid.NewGuid().ToString("N")[..8];
        var (_, client) = await app.CreateAccountAsync(name, "recovery-agent");
        var accountId = (await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/accounts")).EnumerateArray()
            .First(a => a.GetProperty("name").GetString() == name).GetProperty("id").GetGuid();
        var keyFile = agentDir.File(name + ".key");
        var certFile = agentDir.File(name + ".pem");
        string[] newKey = algorithm == "RSA-2048"
            ? ["-newkey", "rsa:2048", "-addext", "keyUsage=critical,keyEncipherment"]
            : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-addext", "keyUsage=critical,keyAgreement"];
        Tool.Run("openssl", ["req", "-x509", .. newKey, "-nodes", "-keyout", keyFile, "-out", certFile, "-days", "30", "-subj", $"/CN={name}"]).EnsureSuccess();
        var r = await app.Admin.PostAsJsonAsync("/api/v1/recovery-agents", new { accountId, certificatePem = File.ReadAllText(certFile) });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        var agentId = (await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetGuid();
        return new Agent(agentId, name, client, keyFile);
    }
}
