using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Escrow;

/// <summary>A key recovery agent: an account, a key pair made on "their machine" (the files), and the
/// registered certificate (<c>KeyFile</c> with extension .pem).</summary>
public sealed record Agent(Guid AgentId, string Name, HttpClient Client, string KeyFile, string? PassphraseFile = null);

/// <summary>The service, plus a directory standing for the agents' machines.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The agents' directory is disposed in DisposeAsync (IAsyncLifetime), which xunit calls for every fixture.")]
public class EscrowApp : CertPortalApp
{
    public const string Pkcs12Password = "correct horse battery staple";

    private readonly ToolDir _agentDir = new("kra-agents");

    public Task<Agent> AddAgentAsync(string algorithm = "RSA-2048") => this.AddRecoveryAgentAsync(_agentDir, algorithm);

    public Task<Agent> AddCliAgentAsync(string algorithm = "EC-P256") => this.AddCliRecoveryAgentAsync(_agentDir, algorithm);

    public static Tool.Result RunKra(params string[] args) => RunKraWith(null, args);

    /// <summary>Runs the real certportal-kra (built beside the tests through the project reference).</summary>
    public static Tool.Result RunKraWith(string? stdin, params string[] args) =>
        Tool.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "certportal-kra.dll"), .. args], stdin: stdin,
            env: new Dictionary<string, string> { ["CERTPORTAL_KRA_PASSPHRASE"] = "" });

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        _agentDir.Dispose();
    }
}

/// <summary>The escrow steps as a user takes them through the API and the CLI, on any running service
/// (SQLite or PostgreSQL).</summary>
public static class RecoveryAgents
{
    /// <summary>Registers a recovery agent whose key pair openssl made "on the agent's machine" (in <paramref name="agentDir"/>).</summary>
    /// <summary>With <paramref name="consolePassword"/> the agent can also sign in to the console.</summary>
    public static async Task<Agent> AddRecoveryAgentAsync(this CertPortalApp app, ToolDir agentDir, string algorithm = "RSA-2048",
        string? consolePassword = null)
    {
        var name = "kra-" + Guid.NewGuid().ToString("N")[..8];
        var (accountId, client) = await app.CreateAccountAsync(name, "recovery-agent", consolePassword);
        var keyFile = agentDir.File(name + ".key");
        var certFile = agentDir.File(name + ".pem");
        string[] newKey = algorithm == "RSA-2048"
            ? ["-newkey", "rsa:2048", "-addext", "keyUsage=critical,keyEncipherment"]
            : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-addext", "keyUsage=critical,keyAgreement"];
        Tool.Run("openssl", ["req", "-x509", .. newKey, "-nodes", "-keyout", keyFile, "-out", certFile, "-days", "30", "-subj", $"/CN={name}"]).EnsureSuccess();
        var registered = await RegisterAsync(app, accountId, certFile);
        return new Agent(registered.GetProperty("id").GetGuid(), name, client, keyFile);
    }

    /// <summary>The agents escrow needs by default (N = 3, M = 2): RSA, EC and RSA keys made by openssl.</summary>
    public static async Task<List<Agent>> AddThreeRecoveryAgentsAsync(this CertPortalApp app, ToolDir agentDir) =>
    [
        await app.AddRecoveryAgentAsync(agentDir, "RSA-2048"),
        await app.AddRecoveryAgentAsync(agentDir, "EC-P256"),
        await app.AddRecoveryAgentAsync(agentDir, "RSA-2048"),
    ];

    /// <summary>An agent made the way docs/escrow.md tells agents to: <c>certportal-kra create-agent</c> with a
    /// passphrase-protected key, registered by the admin from the certificate it wrote.</summary>
    public static async Task<Agent> AddCliRecoveryAgentAsync(this CertPortalApp app, ToolDir agentDir, string algorithm = "EC-P256")
    {
        var name = "kra-cli-" + Guid.NewGuid().ToString("N")[..8];
        var (accountId, client) = await app.CreateAccountAsync(name, "recovery-agent");
        var passphraseFile = agentDir.Write(name + ".pass", "agent passphrase " + name + "\n");
        var keyFile = agentDir.File(name + ".key");
        var certFile = agentDir.File(name + ".pem");
        var created = EscrowApp.RunKra("create-agent", "--name", name, "--algorithm", algorithm, "--key-out", keyFile, "--cert-out", certFile,
            "--passphrase-file", passphraseFile).EnsureSuccess();
        var registered = await RegisterAsync(app, accountId, certFile);
        // The fingerprint the agent reads out to the admin is the one the server registered.
        Assert.Contains(registered.GetProperty("certificateSha256").GetString()!, created.Stdout);
        return new Agent(registered.GetProperty("id").GetGuid(), name, client, keyFile, passphraseFile);
    }

    private static async Task<JsonElement> RegisterAsync(CertPortalApp app, Guid accountId, string certFile)
    {
        var r = await app.Admin.PostAsJsonAsync("/api/v1/recovery-agents", new { accountId, certificatePem = File.ReadAllText(certFile) });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        return await r.Content.ReadFromJsonAsync<JsonElement>();
    }

    /// <summary>What an agent does: download the encrypted share, decrypt and seal it with the CLI and their key, submit it.</summary>
    public static async Task<HttpResponseMessage> ApproveAsync(this CertPortalApp app, Agent agent, Guid requestId) =>
        await SubmitShareAsync(agent, requestId, await DecryptShareAsync(app, agent, requestId));

    /// <summary>Downloads the agent's encrypted share and the request's certificate into one file, as docs/escrow.md says, and
    /// runs <c>certportal-kra decrypt-share</c> on it: the share sealed to the request (or with <paramref name="plaintext"/>
    /// the bare share, <c>--output plaintext</c>).</summary>
    public static async Task<string> DecryptShareAsync(this CertPortalApp app, Agent agent, Guid requestId, bool plaintext = false)
    {
        var share = await agent.Client.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{requestId}/share");
        // A file per call: tests approve the same request concurrently, and a shared name let one call read
        // another's half-written file (an occasional failure of the concurrent-approvals test).
        var shareFile = Path.Combine(Path.GetDirectoryName(agent.KeyFile)!, $"{agent.Name}-{requestId:N}-{Guid.NewGuid():N}.pem");
        File.WriteAllText(shareFile, share.GetProperty("encryptedSharePem").GetString()! + share.GetProperty("submissionCertificatePem").GetString()!);
        return DecryptShareFile(agent, shareFile, plaintext);
    }

    /// <summary><c>certportal-kra decrypt-share</c> on a share file the agent saved.</summary>
    public static string DecryptShareFile(Agent agent, string shareFile, bool plaintext = false)
    {
        string[] passphrase = agent.PassphraseFile is null ? [] : ["--passphrase-file", agent.PassphraseFile];
        string[] output = plaintext ? ["--output", "plaintext"] : [];
        return EscrowApp.RunKra(["decrypt-share", "--share", shareFile, "--key", agent.KeyFile, .. passphrase, .. output]).EnsureSuccess().Stdout.Trim();
    }

    /// <summary>POST .../approvals with what certportal-kra decrypt-share printed (a sealed share).</summary>
    public static Task<HttpResponseMessage> SubmitShareAsync(Agent agent, Guid requestId, string sealedShare) =>
        agent.Client.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/approvals", new { sealedShare });

    /// <summary>POST .../approvals with a plaintext share, as agents did before shares were sealed to their request.</summary>
    public static Task<HttpResponseMessage> SubmitPlaintextShareAsync(Agent agent, Guid requestId, string share) =>
        agent.Client.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/approvals", new { share });

    public static async Task<Guid> OpenRecoveryAsync(this CertPortalApp app, string serial, string purpose = "recover")
    {
        var r = await app.Admin.PostAsJsonAsync("/api/v1/recoveries", new { serialNumber = serial, reason = "lost laptop, ticket 4711", purpose });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        return (await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("id").GetGuid();
    }

    public static async Task<JsonElement> EnrollServerKeyAsync(this CertPortalApp app, string email, string keyAlgorithm = "RSA-2048",
        string? pkcs12Format = null, string profile = "encryption")
    {
        var token = await app.CreateTokenAsync(email, profile);
        var r = await app.Client.PostAsJsonAsync("/api/v1/enrollments",
            new { token = token.Token, keyAlgorithm, pkcs12Password = EscrowApp.Pkcs12Password, pkcs12Format });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        return await r.Content.ReadFromJsonAsync<JsonElement>();
    }

    /// <summary>Flips one bit of a stored byte[] column (at <paramref name="index"/>, default the middle), as an
    /// attacker with write access to the database could.</summary>
    public static async Task AlterStoredBytesAsync<T>(this CertPortalApp app, Func<CertPortal.Data.CertPortalDbContext, T> find,
        Func<T, byte[]> column, Index? index = null) where T : class
    {
        using var scope = app.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortal.Data.CertPortalDbContext>();
        var entity = find(db);
        var bytes = column(entity);
        bytes[index ?? bytes.Length / 2] ^= 0x01;
        foreach (var property in db.Entry(entity).Properties.Where(p => ReferenceEquals(p.CurrentValue, bytes)))
            property.IsModified = true;
        Assert.Equal(1, await db.SaveChangesAsync());
    }

    /// <summary>The current (not superseded) escrow of a certificate, from the database.</summary>
    public static async Task<Guid> EscrowIdAsync(this CertPortalApp app, string serial)
    {
        using var scope = app.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortal.Data.CertPortalDbContext>();
        return await db.KeyEscrows.Where(e => e.SerialNumber == serial && e.SupersededAt == null).Select(e => e.Id).SingleAsync();
    }
}
