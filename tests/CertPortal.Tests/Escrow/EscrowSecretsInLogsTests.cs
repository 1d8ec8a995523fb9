using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Escrow;

/// <summary>An escrow service with every log message captured down to Trace.</summary>
public sealed class LoggedEscrowApp : EscrowApp
{
    public ConcurrentQueue<string> Lines { get; } = new();

    protected override void ConfigureServices(IServiceCollection services) => CapturingLoggerProvider.AddTo(services, Lines);
}

public sealed class EscrowSecretsInLogsTests(LoggedEscrowApp app) : IClassFixture<LoggedEscrowApp>
{
    [Fact]
    public async Task No_password_share_or_private_key_of_an_escrow_and_recovery_reaches_the_logs()
    {
        var agents = new[] { await app.AddAgentAsync("RSA-2048"), await app.AddAgentAsync("EC-P256"), await app.AddAgentAsync("RSA-2048") };
        var enrolled = await app.EnrollServerKeyAsync($"logs.{Guid.NewGuid().ToString("N")[..8]}@example.test", "RSA-2048");
        var serial = enrolled.GetProperty("serialNumber").GetString()!;
        var issuedPkcs12 = enrolled.GetProperty("pkcs12").GetString()!;

        var requestId = await app.OpenRecoveryAsync(serial);
        var shares = new List<string>();
        foreach (var agent in agents.Take(2))
        {
            shares.Add(await app.DecryptShareAsync(agent, requestId, plaintext: true));
            shares.Add(await app.DecryptShareAsync(agent, requestId));
            await Http.EnsureStatus(await RecoveryAgents.SubmitShareAsync(agent, requestId, shares[^1]), HttpStatusCode.OK);
        }
        // A wrong share (another agent's) is refused: the refusal must not echo it.
        var wrong = await RecoveryAgents.SubmitShareAsync(agents[2], requestId, shares[1]);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, wrong.StatusCode);
        Assert.DoesNotContain(shares[1], await wrong.Content.ReadAsStringAsync());
        // Nor a plaintext share, refused as such.
        var plaintext = await RecoveryAgents.SubmitPlaintextShareAsync(agents[2], requestId, shares[0]);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, plaintext.StatusCode);
        Assert.DoesNotContain(shares[0], await plaintext.Content.ReadAsStringAsync());
        const string recoveryPassword = "recovered-password-for-logs";
        var export = await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{requestId}/pkcs12", new { password = recoveryPassword });
        await Http.EnsureStatus(export, HttpStatusCode.OK);
        var recoveredPkcs12 = (await export.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pkcs12").GetString()!;

        // An integrity failure is logged (as an error): with what failed, not with what was inside.
        var second = (await app.EnrollServerKeyAsync($"logs2.{Guid.NewGuid().ToString("N")[..8]}@example.test")).GetProperty("serialNumber").GetString()!;
        await app.AlterStoredBytesAsync(db => db.KeyEscrows.Single(e => e.SerialNumber == second), e => e.Envelope, ^1);
        var failing = await app.OpenRecoveryAsync(second);
        foreach (var agent in agents.Take(2)) await app.ApproveAsync(agent, failing);
        await Http.AssertProblem(await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{failing}/pkcs12", new { password = recoveryPassword }),
            HttpStatusCode.Conflict);

        using var withKey = X509CertificateLoader.LoadPkcs12(Convert.FromBase64String(recoveredPkcs12), recoveryPassword,
            X509KeyStorageFlags.Exportable | X509KeyStorageFlags.EphemeralKeySet);
        using var rsa = withKey.GetRSAPrivateKey()!;
        var pkcs8 = rsa.ExportPkcs8PrivateKey();
        var parameters = rsa.ExportParameters(true);

        var all = string.Join('\n', app.Lines);
        Assert.Contains("integrity", all);
        foreach (var secret in new[]
                 {
                     EscrowApp.Pkcs12Password, recoveryPassword, Middle(issuedPkcs12), Middle(recoveredPkcs12),
                     Middle(Convert.ToBase64String(pkcs8)), Convert.ToHexString(pkcs8)[100..164],
                     Convert.ToBase64String(parameters.D!)[..32], Convert.ToHexString(parameters.P!)[..32],
                 }.Concat(shares.Select(Middle)).Concat(shares.Select(s => Convert.ToHexString(Convert.FromBase64String(s))[2..34])))
            Assert.DoesNotContain(secret, all, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("PRIVATE KEY", all);
    }

    private static string Middle(string base64) => base64.Length <= 40 ? base64[4..^4] : base64[(base64.Length / 2 - 20)..(base64.Length / 2 + 20)];
}
