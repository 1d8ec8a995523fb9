using System.Net;
using System.Net.Http.Json;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Mail;
using Microsoft.Playwright;

namespace CertPortal.Tests.Browser;

/// <summary>Issue 15's journey end to end: an invitation goes out through a real SMTP server, the person opens the
/// link from the message in Chromium and gets their digital ID; no administrator copies a link.</summary>
public sealed class MailedInvitationBrowserTests(SmtpBrowserApp app) : IClassFixture<SmtpBrowserApp>
{
    [Fact]
    public async Task The_link_in_the_mailed_invitation_gets_the_person_their_digital_id_in_the_browser()
    {
        Tool.Require("openssl", "openssl");
        var email = $"mailed.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        var created = await app.Admin.PostAsJsonAsync("/api/v1/tokens",
            new { email, displayName = "Mia Mailed", profile = "signing", validHours = 24, send = true });
        await Http.EnsureStatus(created, HttpStatusCode.Created);

        var message = Assert.Single(await app.Smtp.WaitForMessagesToAsync(email));
        var link = InvitationTests.EnrollmentLink(message.TextBody);
        Assert.StartsWith($"{app.BaseUrl}/enroll#token=cpt_", link);
        Assert.Contains($"href=\"{WebUtility.HtmlEncode(link)}\"", message.HtmlBody);

        var page = await app.NewPageAsync();
        await page.GotoAsync(link);
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Digital ID for Mia Mailed" })).ToBeVisibleAsync();
        await page.GetByLabel("Key type").SelectOptionAsync("EC-P256");
        await page.GetByLabel("Password for the downloaded file").FillAsync("mailed p12 pw");
        await page.GetByLabel("Repeat the password").FillAsync("mailed p12 pw");
        await page.GetByRole(AriaRole.Button, new() { Name = "Get my digital ID" }).ClickAsync();
        await Assertions.Expect(page.Locator("#enroll-success")).ToBeVisibleAsync(new() { Timeout = 120_000 });

        using var dir = new ToolDir("mailed-p12");
        var download = await page.RunAndWaitForDownloadAsync(() => page.Locator("#download-p12").ClickAsync());
        await download.SaveAsAsync(dir.File("id.p12"));
        var certs = Tool.Run("openssl", ["pkcs12", "-in", dir.File("id.p12"), "-nokeys", "-passin", "pass:mailed p12 pw"]).EnsureSuccess().Stdout;
        Assert.Contains(email, Tool.Run("openssl", ["x509", "-noout", "-ext", "subjectAltName"], stdin: certs).EnsureSuccess().Stdout);

        // The link was spent by that enrollment: the token shows as used.
        var tokens = await app.Admin.GetFromJsonAsync<System.Text.Json.JsonElement>($"/api/v1/tokens?email={Uri.EscapeDataString(email)}");
        Assert.Equal("used", Assert.Single(tokens.EnumerateArray()).GetProperty("status").GetString());
    }
}
