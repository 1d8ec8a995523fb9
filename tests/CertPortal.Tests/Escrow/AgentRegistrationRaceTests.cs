using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Postgres;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Escrow;

/// <summary>Registrations sent at once (an admin's double click, two admins) are decided one after another: one account is one
/// agent and one key is one agent, or one person would hold two shares of every later escrow. Own apps: agents stay registered.</summary>
public abstract class AgentRegistrationRaceTests(CertPortalApp app)
{
    private async Task<HttpStatusCode[]> RegisterAtOnceAsync(IEnumerable<(Guid Account, string CertificatePem)> registrations) =>
        await Task.WhenAll(registrations.Select(async r =>
            (await app.Admin.PostAsJsonAsync("/api/v1/recovery-agents", new { accountId = r.Account, certificatePem = r.CertificatePem })).StatusCode));

    private async Task<int> ActiveAgentsAsync(Func<RecoveryAgent, bool> which)
    {
        using var scope = app.Services.CreateScope();
        var agents = await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().RecoveryAgents.AsNoTracking()
            .Where(a => a.RetiredAt == null).ToListAsync();
        return agents.Count(which);
    }

    [Fact]
    public async Task Registrations_of_one_account_at_once_register_one_agent()
    {
        var (account, _) = await app.CreateAccountAsync("kra-race-" + Guid.NewGuid().ToString("N")[..6], "recovery-agent");
        var statuses = await RegisterAtOnceAsync(Enumerable.Range(0, 8).Select(_ => (account, NewAgentCertificatePem())).ToList());
        Assert.Equal(1, statuses.Count(s => s == HttpStatusCode.Created));
        Assert.All(statuses.Where(s => s != HttpStatusCode.Created), s => Assert.Equal(HttpStatusCode.Conflict, s));
        Assert.Equal(1, await ActiveAgentsAsync(a => a.AccountId == account));
    }

    [Fact]
    public async Task Registrations_of_one_key_for_several_accounts_at_once_register_one_agent()
    {
        var pem = NewAgentCertificatePem();
        var accounts = new List<Guid>();
        for (var i = 0; i < 8; i++) accounts.Add((await app.CreateAccountAsync("kra-key-" + Guid.NewGuid().ToString("N")[..6], "recovery-agent")).Id);
        var statuses = await RegisterAtOnceAsync(accounts.Select(a => (a, pem)).ToList());
        Assert.Equal(1, statuses.Count(s => s == HttpStatusCode.Created));
        Assert.All(statuses.Where(s => s != HttpStatusCode.Created), s => Assert.Equal(HttpStatusCode.Conflict, s));
        Assert.Equal(1, await ActiveAgentsAsync(a => accounts.Contains(a.AccountId)));
    }

    /// <summary>A self-signed RSA-2048 certificate allowing key transport, as an agent would bring.</summary>
    private static string NewAgentCertificatePem()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=agent race", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyEncipherment, critical: true));
        // A day back: the escrow apps run clocks ahead of the wall clock, none behind.
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        return cert.ExportCertificatePem();
    }
}

public sealed class SqliteAgentRegistrationRaceTests(EscrowApp app) : AgentRegistrationRaceTests(app), IClassFixture<EscrowApp>;

public sealed class PostgresAgentRegistrationRaceTests(PostgresApp app) : AgentRegistrationRaceTests(app), IClassFixture<PostgresApp>;
