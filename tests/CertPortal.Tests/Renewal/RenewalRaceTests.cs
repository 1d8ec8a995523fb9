using System.Net;
using System.Net.Http.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Postgres;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Renewal;

/// <summary>The service on PostgreSQL with renewal always open: the writer's two transactions overlap there, as those of
/// several nodes do, and the row's lock decides.</summary>
public sealed class PostgresRenewalApp : PostgresApp
{
    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["Renewal:OpensBeforeExpiry"] = "400.00:00:00";
            return settings;
        }
    }
}

public sealed class RenewalRaceTests(OpenRenewalApp app) : IClassFixture<OpenRenewalApp>
{
    [Fact]
    public Task Twenty_renewals_of_one_certificate_give_one_successor_and_a_revocation_racing_them_leaves_what_was_answered() =>
        RenewalRaces.RunAsync(app);
}

public sealed class PostgresRenewalRaceTests(PostgresRenewalApp app) : IClassFixture<PostgresRenewalApp>
{
    [Fact]
    public Task Twenty_renewals_of_one_certificate_give_one_successor_and_a_revocation_racing_them_leaves_what_was_answered() =>
        RenewalRaces.RunAsync(app);
}

/// <summary>Renewals of one certificate at once, each with a new key of its own (twenty holders' devices, or an attacker
/// with a copy of the key): one successor, the others 409; and renewals racing a revocation of the certificate: a
/// successor only where one was answered 201, never more than one, no 5xx.</summary>
public static class RenewalRaces
{
    public static async Task RunAsync(CertPortalApp app)
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        var mailbox = $"race.{run}@example.com";
        var (current, key) = await app.IssueAsync(mailbox, "signing");
        var answers = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => Task.Run(() => RenewAsync(app, mailbox, current.CertificatePem, key))));
        var created = Assert.Single(answers, a => a.Status == HttpStatusCode.Created);
        Assert.All(answers, a => Assert.True(a.Status is HttpStatusCode.Created or HttpStatusCode.Conflict, $"{(int)a.Status} {a.Body}"));
        await using (var scope = app.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            Assert.Equal(created.Serial, (await db.Certificates.SingleAsync(c => c.RenewalOf == current.SerialNumber)).SerialNumber);
            Assert.Equal(created.Serial, (await db.Certificates.SingleAsync(c => c.SerialNumber == current.SerialNumber)).RenewedBy);
            Assert.Equal(1, await db.AuditEvents.CountAsync(e => e.Target == $"certificate:{current.SerialNumber}" && e.Action == "certificate.renewed"));
        }

        var racedMailbox = $"race.revoked.{run}@example.com";
        var (raced, racedKey) = await app.IssueAsync(racedMailbox, "signing");
        var renewals = Enumerable.Range(0, 10).Select(_ => Task.Run(() => RenewAsync(app, racedMailbox, raced.CertificatePem, racedKey))).ToList();
        var revocation = Task.Run(() => app.RevokeAsync(raced.SerialNumber, "affiliationChanged"));
        var raceAnswers = await Task.WhenAll(renewals);
        await Http.EnsureStatus(await revocation, HttpStatusCode.OK);
        Assert.All(raceAnswers, a => Assert.True(a.Status is HttpStatusCode.Created or HttpStatusCode.Conflict or HttpStatusCode.Forbidden,
            $"{(int)a.Status} {a.Body}"));
        await using (var scope = app.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            var successors = await db.Certificates.Where(c => c.RenewalOf == raced.SerialNumber).Select(c => c.SerialNumber).ToListAsync();
            Assert.Equal(raceAnswers.Where(a => a.Status == HttpStatusCode.Created).Select(a => a.Serial), successors);
            Assert.NotNull((await db.Certificates.SingleAsync(c => c.SerialNumber == raced.SerialNumber)).RevokedAt);
        }
    }

    private sealed record Answer(HttpStatusCode Status, string? Serial, string Body);

    private static async Task<Answer> RenewAsync(CertPortalApp app, string mailbox, string certificatePem, SubscriberKeyPair key)
    {
        var cms = RenewalRequests.SignByKeyIdentifier(SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(mailbox), certificatePem, key,
            app.Clock?.GetUtcNow());
        var response = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = Convert.ToBase64String(cms) });
        var body = await response.Content.ReadAsStringAsync();
        var serial = response.StatusCode == HttpStatusCode.Created
            ? System.Text.Json.JsonDocument.Parse(body).RootElement.GetProperty("serialNumber").GetString()
            : null;
        return new Answer(response.StatusCode, serial, body);
    }
}
