using System.Net;
using System.Net.Http.Json;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Mail;
using Microsoft.Extensions.Time.Testing;
using Microsoft.Playwright;
using MimeKit;

namespace CertPortal.Tests.Browser;

/// <summary>The service mailing through a real SMTP server (aiosmtpd), its links on its own address.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The SMTP server is disposed in DisposeAsync (IAsyncLifetime), which xunit calls for every fixture.")]
public class SmtpBrowserApp : BrowserApp
{
    public SmtpServer Smtp { get; } = new();

    protected override IDictionary<string, string?> Settings => MailApp.MailSettings(Smtp.Port);

    public override async Task InitializeAsync()
    {
        await Smtp.InitializeAsync();
        await base.InitializeAsync();
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await Smtp.DisposeAsync();
    }
}

/// <summary>Mailing through aiosmtpd, with a 30-day expiry reminder and a clock the test moves.</summary>
public sealed class MailBrowserApp : SmtpBrowserApp
{
    public MailBrowserApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow);

    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["Mail:ExpiryReminderDays:0"] = "30";
            // The address people would see in a real deployment (the links are checked, not followed).
            settings["PortalUrl"] = "https://pki.example.com";
            settings["Mail:OrganizationName"] = "Example Corporation";
            return settings;
        }
    }
}

/// <summary>What people receive, as they see it: the HTML part of a real invitation, expiry reminder and revocation notice,
/// each delivered through the SMTP server and rendered in Chromium (the screenshots in the README's Mail section). The
/// messages load nothing from anywhere (no remote images or styles to track the reader), and their links lead where
/// the text says.</summary>
public sealed class MailScreenshotTests(MailBrowserApp app) : IClassFixture<MailBrowserApp>
{
    [Fact]
    public async Task Invitation_reminder_and_revocation_notice_as_people_see_them()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        var alice = $"alice.{run}@example.com";
        var created = await app.Admin.PostAsJsonAsync("/api/v1/tokens",
            new { email = alice, displayName = "Alice Example", profile = "dual", validHours = 72, send = true });
        await Http.EnsureStatus(created, HttpStatusCode.Created);
        var invitation = Assert.Single(await app.Smtp.WaitForMessagesToAsync(alice));
        var page = await ShowAsync(invitation, "mail-01-invitation");
        Assert.StartsWith("https://pki.example.com/enroll#token=cpt_",
            await page.GetByRole(AriaRole.Link, new() { Name = "Get your digital ID" }).GetAttributeAsync("href"));

        // Thirty days before a certificate expires, its holder is reminded, with a link to renew it.
        var bob = $"bob.{run}@example.com";
        var expiring = await EnrollAsync(bob, "Bob Example");
        app.Clock!.Advance(expiring.NotAfter.AddDays(-30).AddHours(1) - app.Clock.GetUtcNow());
        var reminder = Assert.Single(await app.Smtp.WaitForMessagesToAsync(bob));
        page = await ShowAsync(reminder, "mail-02-reminder");
        Assert.Equal($"https://pki.example.com/renew?serial={expiring.SerialNumber}",
            await page.GetByRole(AriaRole.Link, new() { Name = "Renew your digital ID" }).GetAttributeAsync("href"));

        // A revoked certificate: the holder is told when, why, and what to do.
        var carol = $"carol.{run}@example.com";
        var revoked = await EnrollAsync(carol, "Carol Example");
        await Http.EnsureStatus(await app.RevokeAsync(revoked.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
        var notice = Assert.Single(await app.Smtp.WaitForMessagesToAsync(carol));
        page = await ShowAsync(notice, "mail-03-revocation");
        await Assertions.Expect(page.Locator("body")).ToContainTextAsync(revoked.SerialNumber);
    }

    private async Task<EnrollmentResponse> EnrollAsync(string email, string displayName)
    {
        var token = await app.CreateTokenAsync(email, "dual", displayName);
        return await app.EnrollAsync(token.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email));
    }

    /// <summary>The message's HTML part in a page of mail-reading width, screenshotted; fails if it loads anything.</summary>
    private async Task<IPage> ShowAsync(MimeMessage message, string screenshot)
    {
        Assert.False(string.IsNullOrEmpty(message.HtmlBody), $"{message.Subject}: no HTML part");
        var page = await app.NewPageAsync();
        var requests = new List<string>();
        page.Request += (_, request) => requests.Add(request.Url);
        await page.SetViewportSizeAsync(720, 400);
        await page.SetContentAsync(message.HtmlBody);
        await BrowserApp.ScreenshotAsync(page, screenshot);
        Assert.Empty(requests);
        return page;
    }
}
