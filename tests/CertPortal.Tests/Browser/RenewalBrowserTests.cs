using System.Text.Json;
using CertPortal.Tests.Infrastructure;
using Microsoft.Playwright;

namespace CertPortal.Tests.Browser;

/// <summary>Renewal may start at once here (the window is longer than certificates live).</summary>
public sealed class RenewalBrowserApp : BrowserApp
{
    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Renewal:OpensBeforeExpiry"] = "400.00:00:00",
    };
}

/// <summary>A person renews in Chromium with the .p12 they saved at enrollment, no administrator involved: the page opens
/// the file, signs the request for a new key with the old one, and hands out a new .p12.</summary>
public sealed class RenewalBrowserTests(RenewalBrowserApp app) : IClassFixture<RenewalBrowserApp>
{
    private const string Password = "my p12 password";

    [Fact]
    public async Task Person_renews_in_the_browser_with_the_p12_from_enrollment()
    {
        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("browser-renewal");
        var email = $"erin.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        var token = await app.CreateTokenAsync(email, "dual", "Erin Example");

        // The earlier enrollment, in the browser as people do it.
        var page = await app.NewPageAsync();
        await page.GotoAsync(token.EnrollmentUrl);
        await page.GetByLabel("Password for the downloaded file").FillAsync(Password);
        await page.GetByLabel("Repeat the password").FillAsync(Password);
        await page.GetByRole(AriaRole.Button, new() { Name = "Get my digital ID" }).ClickAsync();
        await Assertions.Expect(page.Locator("#enroll-success")).ToBeVisibleAsync(new() { Timeout = 120_000 });
        var oldSerial = (await page.Locator("#cert-serial").TextContentAsync())!.Trim();
        var saved = await page.RunAndWaitForDownloadAsync(() => page.GetByRole(AriaRole.Button, new() { Name = "Download digital ID (.p12)" }).ClickAsync());
        var oldP12 = dir.File("old.p12");
        await saved.SaveAsAsync(oldP12);

        // Later, from the reminder's link, in a new browser session.
        var person = await app.NewPageAsync();
        var sent = new List<string>();
        person.Request += (_, request) => { if (request.Method == "POST") sent.Add(request.Url + " " + request.PostData); };
        await person.GotoAsync($"/renew?serial={oldSerial}");
        await Assertions.Expect(person.Locator("#renew-email")).ToHaveTextAsync(email);
        await person.GetByLabel("Your digital ID file").SetInputFilesAsync(oldP12);
        await person.GetByLabel("Its password").FillAsync(Password);
        await BrowserApp.ScreenshotAsync(person, "renewal-01-page");
        await person.GetByRole(AriaRole.Button, new() { Name = "Renew my digital ID" }).ClickAsync();
        await Assertions.Expect(person.Locator("#renew-success")).ToBeVisibleAsync(new() { Timeout = 120_000 });
        await BrowserApp.ScreenshotAsync(person, "renewal-02-ready");
        var newSerial = (await person.Locator("#cert-serial").TextContentAsync())!.Trim();
        Assert.NotEqual(oldSerial, newSerial);

        var download = await person.RunAndWaitForDownloadAsync(() => person.GetByRole(AriaRole.Button, new() { Name = "Download new digital ID (.p12)" }).ClickAsync());
        Assert.Equal($"{email}-signing-and-encryption.p12", download.SuggestedFilename);
        var newP12 = dir.File("new.p12");
        await download.SaveAsAsync(newP12);

        // The new file opens with the same password (OpenSSL), holds a new key, and its certificate is the renewed one.
        string PublicKeyIn(string p12)
        {
            var key = Tool.Run("openssl", ["pkcs12", "-in", p12, "-nocerts", "-nodes", "-passin", $"pass:{Password}"]).EnsureSuccess().Stdout;
            return Tool.Run("openssl", ["pkey", "-pubout", "-in", dir.Write(Path.GetFileName(p12) + ".key", key)]).EnsureSuccess().Stdout;
        }
        var issued = await app.GetCertificateAsync(newSerial);
        Assert.Equal(email, issued.Email);
        Assert.Equal("dual", issued.Profile);
        var certPub = Tool.Run("openssl", ["x509", "-noout", "-pubkey", "-in", dir.Write("new.pem", issued.CertificatePem)]).EnsureSuccess().Stdout;
        Assert.Equal(certPub, PublicKeyIn(newP12));
        Assert.NotEqual(PublicKeyIn(oldP12), PublicKeyIn(newP12));
        Assert.Equal("valid", (await app.GetCertificateAsync(oldSerial)).Status);

        // The server received one signed request: no key, no file, no password.
        var renewal = Assert.Single(sent, s => s.Contains("/api/v1/renewals"));
        var body = JsonDocument.Parse(renewal[(renewal.IndexOf(' ') + 1)..]).RootElement;
        Assert.Equal(["cms"], body.EnumerateObject().Select(p => p.Name));
        Assert.DoesNotContain(Password, string.Join('\n', sent));

        // The same file again: the certificate was renewed already, and the page says so in words.
        var again = await app.NewPageAsync();
        await again.GotoAsync("/renew");
        await again.GetByLabel("Your digital ID file").SetInputFilesAsync(oldP12);
        await again.GetByLabel("Its password").FillAsync(Password);
        await again.GetByRole(AriaRole.Button, new() { Name = "Renew my digital ID" }).ClickAsync();
        await Assertions.Expect(again.Locator("#renew-error")).ToContainTextAsync("already renewed", new() { Timeout = 120_000 });

        // A wrong password is explained, not a crash.
        await again.GetByLabel("Its password").FillAsync("not the password");
        await again.GetByRole(AriaRole.Button, new() { Name = "Renew my digital ID" }).ClickAsync();
        await Assertions.Expect(again.Locator("#renew-error")).ToContainTextAsync("password does not open this file");
    }
}
