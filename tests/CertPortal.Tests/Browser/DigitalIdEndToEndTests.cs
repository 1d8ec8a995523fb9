using System.Text.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;

namespace CertPortal.Tests.Browser;

/// <summary>The whole flow in a real Chromium: first-run setup, sign-in, token, a person's digital ID
/// made in the browser, the download checked with openssl, revocation in the console, the CRL.</summary>
public sealed class DigitalIdEndToEndTests(BrowserApp app) : IClassFixture<BrowserApp>
{
    private const string AdminPassword = "console-password-42";

    [Fact]
    public async Task Admin_issues_a_token_person_gets_a_digital_id_in_the_browser_admin_revokes_it()
    {
        Tool.Require("openssl", "openssl");
        var admin = await app.NewPageAsync();

        // First run: the setup page, guarded by the admin API key, creates the first administrator.
        await admin.GotoAsync("/setup");
        await BrowserApp.ScreenshotAsync(admin, "01-setup");
        await admin.GetByLabel("Admin API key").FillAsync(CertPortalApp.AdminKey);
        await admin.GetByLabel("Account name").FillAsync("first-admin");
        await admin.GetByLabel("Password").FillAsync(AdminPassword);
        await admin.GetByRole(AriaRole.Button, new() { Name = "Create administrator" }).ClickAsync();
        await BrowserApp.ExpectSignInPageAsync(admin);
        await BrowserApp.ScreenshotAsync(admin, "02-sign-in");
        await app.SignInAsync(admin, "first-admin", AdminPassword);
        await BrowserApp.ScreenshotAsync(admin, "03-console");

        // Create a token; the enrollment link is shown once.
        var email = $"dana.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        await admin.GotoAsync("/admin/tokens");
        await admin.GetByLabel("E-mail address").FillAsync(email);
        await admin.GetByLabel("Display name").FillAsync("Dana Example");
        await admin.GetByRole(AriaRole.Button, new() { Name = "Create token" }).ClickAsync();
        var link = await admin.Locator("#enrollment-link").InputValueAsync();
        Assert.StartsWith($"{app.BaseUrl}/enroll#token=cpt_", link);
        await BrowserApp.ScreenshotAsync(admin, "04-token-created");

        // The person opens the link in their own browser.
        var person = await app.NewPageAsync();
        var sentToServer = new List<string>();
        var requested = new List<string>();
        person.Request += (_, request) =>
        {
            requested.Add(request.Url);
            if (request.Method == "POST") sentToServer.Add(request.Url + " " + request.PostData);
        };
        await person.GotoAsync(link);
        await Assertions.Expect(person.GetByRole(AriaRole.Heading, new() { Name = "Digital ID for Dana Example" })).ToBeVisibleAsync();
        // The token travelled in a POST body only: in no requested URL, and gone from the address bar and history.
        Assert.Contains(sentToServer, s => s.StartsWith($"{app.BaseUrl}/enroll ", StringComparison.Ordinal) && s.Contains("token=token%3Dcpt_", StringComparison.Ordinal));
        Assert.DoesNotContain(requested, u => u.Contains("cpt_", StringComparison.Ordinal));
        Assert.DoesNotContain("cpt_", person.Url);
        await BrowserApp.ScreenshotAsync(person, "05-enroll");
        await person.GetByLabel("Password for the downloaded file").FillAsync("my p12 password");
        await person.GetByLabel("Repeat the password").FillAsync("my p12 password");
        await person.GetByRole(AriaRole.Button, new() { Name = "Get my digital ID" }).ClickAsync();
        await Assertions.Expect(person.Locator("#enroll-success")).ToBeVisibleAsync(new() { Timeout = 120_000 });
        await BrowserApp.ScreenshotAsync(person, "06-digital-id-ready");
        var serial = (await person.Locator("#cert-serial").TextContentAsync())!.Trim();

        using var dir = new ToolDir("browser-p12");
        var download = await person.RunAndWaitForDownloadAsync(() => person.GetByRole(AriaRole.Button, new() { Name = "Download digital ID (.p12)" }).ClickAsync());
        var p12 = dir.File("digital-id.p12");
        await download.SaveAsAsync(p12);
        var keyOnly = Tool.Run("openssl", ["pkcs12", "-in", p12, "-nocerts", "-nodes", "-passin", "pass:my p12 password"]).EnsureSuccess().Stdout;
        var keyPub = Tool.Run("openssl", ["pkey", "-pubout", "-in", dir.Write("key.pem", keyOnly)]).EnsureSuccess().Stdout;
        var issued = await app.GetCertificateAsync(serial);
        var certPub = Tool.Run("openssl", ["x509", "-noout", "-pubkey", "-in", dir.Write("cert.pem", issued.CertificatePem)]).EnsureSuccess().Stdout;
        Assert.Equal(certPub, keyPub);

        // The server saw a CSR and the token, never a private key or the PKCS#12 password.
        var enrollment = Assert.Single(sentToServer, s => s.Contains("/api/v1/enrollments"));
        var body = JsonDocument.Parse(enrollment[(enrollment.IndexOf(' ') + 1)..]).RootElement;
        Assert.Equal(["csr", "token"], body.EnumerateObject().Select(p => p.Name).Order());
        Assert.DoesNotContain("PRIVATE KEY", enrollment);
        Assert.DoesNotContain("my p12 password", string.Join('\n', sentToServer));
        using (var scope = app.Services.CreateScope())
            Assert.False(await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().KeyEscrows.AnyAsync(e => e.SerialNumber == serial));

        // The admin revokes it in the console, with a reason and a confirmation; the CRL lists it.
        await admin.GotoAsync($"/admin/certificates?email={Uri.EscapeDataString(email)}");
        await BrowserApp.ScreenshotAsync(admin, "07-certificates");
        await admin.GetByRole(AriaRole.Link, new() { Name = serial }).ClickAsync();
        await admin.GetByLabel("Reason (RFC 5280)").SelectOptionAsync("keyCompromise");
        await Assertions.Expect(admin.Locator("#revoke-button")).ToBeDisabledAsync();
        await admin.GetByLabel("I confirm").CheckAsync();
        await BrowserApp.ScreenshotAsync(admin, "08-revoke");
        await admin.Locator("#revoke-button").ClickAsync();
        await Assertions.Expect(admin.Locator("#cert-status")).ToContainTextAsync("Revoked (Key compromised");
        var crl = dir.Write("issuing.crl", await app.Client.GetByteArrayAsync("/crl/issuing.crl"));
        var crlText = Tool.Run("openssl", ["crl", "-inform", "DER", "-in", crl, "-noout", "-text"]).EnsureSuccess().Stdout;
        Assert.Contains($"Serial Number: {serial}", crlText);
        Assert.Contains("Key Compromise", crlText);

        await admin.GotoAsync("/admin");
        await BrowserApp.ScreenshotAsync(admin, "09-console-crl-status");
        await admin.GotoAsync("/admin/audit");
        Assert.Contains("certificate.revoked", await admin.ContentAsync());
        await BrowserApp.ScreenshotAsync(admin, "10-audit");
    }

}
