using System.Net;
using System.Net.Http.Json;
using CertPortal.Tests.Escrow;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace CertPortal.Tests.Mail;

/// <summary>Mail on, encryption keys generated and escrowed by the server (policy <c>Required</c>, three agents), a 30-day
/// reminder, and a clock a few minutes ahead so the agents' certificates OpenSSL makes "now" are valid.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The agents' directory is disposed in DisposeAsync (IAsyncLifetime), which xunit calls for every fixture.")]
public sealed class EscrowedMailApp : MailApp
{
    private readonly ToolDir _agentDir = new("mail-agents");

    public EscrowedMailApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(5));

    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["Escrow:EncryptionKeyGeneration"] = "Required";
            settings["Mail:ExpiryReminderDays:0"] = "30";
            return settings;
        }
    }

    public override async Task InitializeAsync()
    {
        Tool.Require("openssl", "openssl");
        await base.InitializeAsync();
        await this.AddThreeRecoveryAgentsAsync(_agentDir);
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        _agentDir.Dispose();
    }
}

/// <summary>Where the service makes and escrows the key, its messages say so: the invitation does not promise that the
/// browser creates the key, and the reminder of an escrowed ID says the renewal page gives a key the service made.
/// IDs whose keys people make themselves keep the usual words.</summary>
public sealed class EscrowedMailTests(EscrowedMailApp app) : IClassFixture<EscrowedMailApp>
{
    [Fact]
    public async Task Invitations_and_reminders_say_who_makes_the_key()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        var encryption = $"enc.{run}@example.com";
        var signing = $"sig.{run}@example.com";
        foreach (var (email, profile) in new[] { (encryption, "encryption"), (signing, "signing") })
            await Http.EnsureStatus(await app.Admin.PostAsJsonAsync("/api/v1/tokens", new { email, profile, validHours = 72, send = true }),
                HttpStatusCode.Created);
        var escrowedInvitation = Assert.Single(await app.Smtp.WaitForMessagesToAsync(encryption)).TextBody;
        Assert.Contains("the service creates your key", escrowedInvitation);
        Assert.DoesNotContain("Your browser creates the key", escrowedInvitation);
        Assert.Contains("Your browser creates the key", Assert.Single(await app.Smtp.WaitForMessagesToAsync(signing)).TextBody);

        // Thirty days before expiry: an escrowed encryption ID and a signing ID are reminded, each in its own words.
        var escrowedHolder = $"ida.{run}@example.com";
        var signer = $"sam.{run}@example.com";
        var escrowed = await app.EnrollServerKeyAsync(escrowedHolder, "RSA-2048");
        await app.IssueAsync(signer, "signing");
        var notAfter = escrowed.GetProperty("notAfter").GetDateTimeOffset();
        app.Clock!.Advance(notAfter.AddDays(-30).AddHours(1) - app.Clock.GetUtcNow());
        var escrowedReminder = Assert.Single(await app.Smtp.WaitForMessagesToAsync(escrowedHolder)).TextBody;
        Assert.Contains("the service makes your new key", escrowedReminder);
        Assert.Contains($"/renew?serial={escrowed.GetProperty("serialNumber").GetString()}", escrowedReminder);
        Assert.Contains("the page makes your new digital ID there", Assert.Single(await app.Smtp.WaitForMessagesToAsync(signer)).TextBody);
    }
}
