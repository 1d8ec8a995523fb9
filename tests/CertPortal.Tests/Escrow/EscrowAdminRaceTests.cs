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

/// <summary>Escrow administration sent at once (an admin's double click, two admins) is decided one change after another:
/// one account is one agent and one key is one agent, or one person would hold two shares of every later escrow; and no policy
/// change is lost or answered 500. Own apps: agents stay registered and the policy changed.</summary>
public abstract class EscrowAdminRaceTests(CertPortalApp app)
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

    [Fact]
    public async Task Policy_changes_sent_at_once_are_all_answered_and_none_is_lost()
    {
        // The first change inserts the policy row: changes at once all inserted it (a primary key violation, 500), and each
        // wrote back the fields it had not been asked to change as it had read them.
        var puts = Enumerable.Range(0, 8).SelectMany(_ => new[]
        {
            app.Admin.PutAsJsonAsync("/api/v1/escrow/policy", new { threshold = 3 }),
            app.Admin.PutAsJsonAsync("/api/v1/escrow/policy", new { dualKeyGeneration = "Refused" }),
        }).ToList();
        Assert.All(await Task.WhenAll(puts), r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        var policy = await app.Admin.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/v1/escrow/policy");
        Assert.Equal(3, policy.GetProperty("threshold").GetInt32());
        Assert.Equal("Refused", policy.GetProperty("dualKeyGeneration").GetString());
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

public sealed class SqliteEscrowAdminRaceTests(EscrowApp app) : EscrowAdminRaceTests(app), IClassFixture<EscrowApp>;

public sealed class PostgresEscrowAdminRaceTests(PostgresApp app) : EscrowAdminRaceTests(app), IClassFixture<PostgresApp>;
