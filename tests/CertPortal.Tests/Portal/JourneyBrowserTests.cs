using CertPortal.Tests.Browser;
using CertPortal.Tests.Infrastructure;
using Microsoft.Playwright;

namespace CertPortal.Tests.Portal;

/// <summary>A person's way to a digital ID cannot lose the key without warning: in Chromium, with a time zone that
/// is not UTC.</summary>
public sealed class JourneyBrowserTests(BrowserApp app) : IClassFixture<BrowserApp>
{
    private async Task<IPage> PersonAsync()
    {
        var context = await app.Browser.NewContextAsync(new()
        {
            BaseURL = app.PortalBaseUrl, AcceptDownloads = true, TimezoneId = "America/New_York", Locale = "en-US",
            BypassCSP = true, // axe-core is injected as a script tag
        });
        var page = await context.NewPageAsync();
        page.SetDefaultTimeout(90_000);
        return page;
    }

    [Fact]
    public async Task An_encryption_id_warns_before_leaving_unsaved_names_its_file_and_a_spent_link_explains_itself()
    {
        var email = $"jo.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        var token = await app.CreateTokenAsync(email, "dual", displayName: "Jo Journey");
        var page = await PersonAsync();

        // The whole link pasted into the box works.
        await page.GotoAsync("/enroll");
        await page.GetByLabel("Enrollment link or token").FillAsync($"  {token.EnrollmentUrl}  ");
        await page.GetByRole(AriaRole.Button, new() { Name = "Continue" }).ClickAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Digital ID for Jo Journey" })).ToBeVisibleAsync();

        // RSA is chosen for an ID that receives encrypted mail, and the page says why; times are local, not UTC.
        Assert.Equal("RSA-2048", await page.GetByLabel("Key type").InputValueAsync());
        await Assertions.Expect(page.Locator("#key-hint")).ToContainTextAsync("Keep RSA");
        await Assertions.Expect(page.Locator("option[value=EC-P256]")).ToHaveTextAsync("Elliptic curve P-256 (not recommended for encryption)");
        var validUntil = page.Locator("#link-valid-until time");
        await Assertions.Expect(validUntil).Not.ToContainTextAsync("UTC");
        var local = TimeZoneInfo.ConvertTime(token.ExpiresAt, TimeZoneInfo.FindSystemTimeZoneById("America/New_York"));
        await Assertions.Expect(validUntil).ToContainTextAsync(local.ToString("MMMM d, yyyy", System.Globalization.CultureInfo.InvariantCulture));

        await page.GetByLabel("Password for the downloaded file").FillAsync("journey p12 pw");
        await page.GetByLabel("Repeat the password").FillAsync("journey p12 pw");
        await page.GetByRole(AriaRole.Button, new() { Name = "Get my digital ID" }).ClickAsync();
        await Assertions.Expect(page.Locator("#enroll-success")).ToBeVisibleAsync(new() { Timeout = 120_000 });
        await Assertions.Expect(page.Locator("#link-valid-until")).ToBeHiddenAsync();
        await Assertions.Expect(page.Locator("#backup-warning")).ToContainTextAsync("Keep a backup");
        await Assertions.Expect(page.GetByText("choose the certificate as your Signing Certificate and as your Encryption Certificate")).ToBeAttachedAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Link, new() { Name = "root CA (.pem: Thunderbird, Linux)" })).ToBeVisibleAsync();
        await BrowserApp.ScreenshotAsync(page, "18-digital-id-ready-encryption");
        Assert.Empty(await BrowserApp.SeriousAccessibilityViolationsAsync(page));

        // Leaving before the download asks first; staying keeps the page and the key.
        var dialogs = new List<string>();
        page.Dialog += async (_, dialog) => { dialogs.Add(dialog.Type); await dialog.DismissAsync(); };
        await page.GetByRole(AriaRole.Link, new() { Name = "Get a digital ID" }).ClickAsync();
        await Assertions.Expect(page.Locator("#enroll-success")).ToBeVisibleAsync();
        Assert.Equal(["beforeunload"], dialogs);

        var download = await page.RunAndWaitForDownloadAsync(() => page.GetByRole(AriaRole.Button, new() { Name = "Download digital ID (.p12)" }).ClickAsync());
        Assert.Equal($"{email}-signing-and-encryption.p12", download.SuggestedFilename);
        using var dir = new ToolDir("journey-p12");
        await download.SaveAsAsync(dir.File("id.p12"));
        var serial = (await page.Locator("#cert-serial").TextContentAsync())!.Trim();
        var issued = await app.GetCertificateAsync(serial);
        Pkcs12Attributes.AssertNamedAndKeyedByCertificate(dir.File("id.p12"), "journey p12 pw", issued.CertificatePem,
            "Jo Journey (signing and encryption) - CertPortal");

        // Saved: leaving no longer asks. Back shows no usable form but what happened to the link.
        await page.GotoAsync("/");
        Assert.Single(dialogs);
        await page.GoBackAsync();
        await Assertions.Expect(page.Locator("#token-used")).ToContainTextAsync("already been used");
        Assert.Equal(0, await page.Locator("#enroll-form").CountAsync());
        await Assertions.Expect(page.Locator("#token-used time")).Not.ToContainTextAsync("UTC");
        await BrowserApp.ScreenshotAsync(page, "19-link-already-used");
        Assert.Empty(await BrowserApp.SeriousAccessibilityViolationsAsync(page));
        await page.GotoAsync("/no-such-page-either");
        Assert.Empty(await BrowserApp.SeriousAccessibilityViolationsAsync(page));
    }

    [Fact]
    public async Task A_signing_id_gets_signing_wording_and_no_backup_warning_and_the_root_ca_is_offered_as_pem()
    {
        var email = $"sig.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        var token = await app.CreateTokenAsync(email, "signing", displayName: "Sam Signer");
        var page = await PersonAsync();
        await page.GotoAsync($"/enroll?token={Uri.EscapeDataString(token.Token)}");
        await Assertions.Expect(page.Locator("#key-hint")).Not.ToContainTextAsync("Keep RSA");
        await page.GetByLabel("Key type").SelectOptionAsync("EC-P256");
        await page.GetByLabel("Password for the downloaded file").FillAsync("signing p12 pw");
        await page.GetByLabel("Repeat the password").FillAsync("signing p12 pw");
        await page.GetByRole(AriaRole.Button, new() { Name = "Get my digital ID" }).ClickAsync();
        await Assertions.Expect(page.Locator("#enroll-success")).ToBeVisibleAsync(new() { Timeout = 120_000 });
        Assert.Equal(0, await page.Locator("#backup-warning").CountAsync());
        var steps = await page.Locator("#enroll-success").InnerTextAsync();
        Assert.Contains("Signing Certificate (leave Encryption Certificate as it is)", steps);
        Assert.DoesNotContain("signing and encryption", steps);
        var download = await page.RunAndWaitForDownloadAsync(() => page.Locator("#download-p12").ClickAsync());
        Assert.Equal($"{email}-signing.p12", download.SuggestedFilename);

        using var http = new HttpClient { BaseAddress = new Uri(app.BaseUrl) };
        var pem = await http.GetStringAsync("/ca/root.pem");
        using var dir = new ToolDir("root-pem");
        var subject = Tool.Run("openssl", ["x509", "-noout", "-subject", "-in", dir.Write("root.pem", pem)]).EnsureSuccess().Stdout;
        Assert.Contains("Root CA", subject);
        Assert.Equal(await http.GetByteArrayAsync("/ca/root.crt"),
            Convert.FromBase64String(string.Concat(pem.Split('\n').Where(l => !l.StartsWith("-----", StringComparison.Ordinal)))));
    }
}
