using System.Text.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
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

        // The server received one signed request and the serial of the ID the link named (so the server, too, refuses a
        // request signed by another ID): no key, no file, no password.
        var renewal = Assert.Single(sent, s => s.Contains("/api/v1/renewals"));
        var body = JsonDocument.Parse(renewal[(renewal.IndexOf(' ') + 1)..]).RootElement;
        Assert.Equal(["cms", "expectedSerialNumber"], body.EnumerateObject().Select(p => p.Name));
        Assert.Equal(oldSerial, body.GetProperty("expectedSerialNumber").GetString());
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

    /// <summary>A person with separate signing and encryption IDs follows the encryption ID's reminder and chooses the signing
    /// ID's file: the page says which ID the file holds and which one the link is about, and renews nothing (the signing ID
    /// renewed in its place would leave the encryption ID to expire, and the signing reminder's link to fail with 409). The
    /// same page with the encryption ID's file renews it; the link's serial may be written in any case.</summary>
    [Fact]
    public async Task A_reminder_link_for_one_id_does_not_renew_another_id_whose_file_is_chosen()
    {
        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("browser-renewal-other-id");
        var email = $"finn.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        // Each ID's .p12 as OpenSSL 3 writes it (PBES2, AES-256), key and certificate with the chain.
        string P12For(string name, EnrollmentResponse cert, SubscriberKeyPair key)
        {
            Tool.Run("openssl", ["pkcs12", "-export", "-inkey", dir.Write(name + ".key", key.PrivateKeyPem), "-in", dir.Write(name + ".pem", cert.CertificatePem),
                "-certfile", dir.Write(name + "-chain.pem", cert.ChainPem), "-name", $"{email} {name}", "-passout", $"pass:{Password}",
                "-out", dir.File(name + ".p12")]).EnsureSuccess();
            return dir.File(name + ".p12");
        }
        var (signing, signingKey) = await app.IssueAsync(email, "signing", "RSA-2048");
        var (encryption, encryptionKey) = await app.IssueAsync(email, "encryption", "RSA-2048");
        var signingP12 = P12For("signing", signing, signingKey);
        var encryptionP12 = P12For("encryption", encryption, encryptionKey);

        List<string> RenewedFrom(string serial)
        {
            using var scope = app.Services.CreateScope();
            return scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().Certificates.AsNoTracking()
                .Where(c => c.RenewalOf == serial).Select(c => c.SerialNumber).ToList();
        }

        // The encryption ID's reminder link; the signing ID's file. (CSP bypassed for axe-core's script only.)
        var person = await app.NewPageAsync(bypassCsp: true);
        var sent = new List<string>();
        person.Request += (_, request) => { if (request.Method == "POST") sent.Add(request.Url); };
        await person.GotoAsync($"/renew?serial={encryption.SerialNumber.ToLowerInvariant()}");
        await Assertions.Expect(person.Locator("#which")).ToContainTextAsync(encryption.SerialNumber);
        await person.GetByLabel("Your digital ID file").SetInputFilesAsync(signingP12);
        await person.GetByLabel("Its password").FillAsync(Password);
        await person.GetByRole(AriaRole.Button, new() { Name = "Renew my digital ID" }).ClickAsync();
        // Whichever comes first: the message, or (the defect) the signing ID renewed.
        await Assertions.Expect(person.Locator("#renew-error:visible, #renew-success:visible").First).ToBeVisibleAsync(new() { Timeout = 120_000 });
        Assert.False(await person.Locator("#renew-success").IsVisibleAsync(),
            $"the page renewed the signing ID {signing.SerialNumber} from the encryption ID's link: {string.Join(", ", RenewedFrom(signing.SerialNumber))}");
        var alert = person.GetByRole(AriaRole.Alert);
        await Assertions.Expect(alert).ToContainTextAsync(
            $"This file holds your digital ID {signing.SerialNumber} (signing), but this link is about {encryption.SerialNumber} (encryption).");
        await Assertions.Expect(alert).ToContainTextAsync("Choose the file of that digital ID. Nothing was renewed.");
        // Renewing the other ID is still possible, deliberately: on the page for any ID, choosing the file there.
        await Assertions.Expect(alert.GetByRole(AriaRole.Link, new() { Name = "renew it on the page for any digital ID" })).ToHaveAttributeAsync("href", "/renew");
        await BrowserApp.ScreenshotAsync(person, "renewal-04-other-id");
        Assert.Empty(await BrowserApp.SeriousAccessibilityViolationsAsync(person));

        Assert.DoesNotContain(sent, s => s.Contains("/api/v1/renewals"));
        Assert.Equal("valid", (await app.GetCertificateAsync(signing.SerialNumber)).Status);
        Assert.Empty(RenewedFrom(signing.SerialNumber));
        Assert.Empty(RenewedFrom(encryption.SerialNumber));

        // The right file on the same page renews the encryption ID, and still not the signing one.
        await person.GetByLabel("Your digital ID file").SetInputFilesAsync(encryptionP12);
        await person.GetByRole(AriaRole.Button, new() { Name = "Renew my digital ID" }).ClickAsync();
        await Assertions.Expect(person.Locator("#renew-success")).ToBeVisibleAsync(new() { Timeout = 120_000 });
        var newSerial = (await person.Locator("#cert-serial").TextContentAsync())!.Trim();
        Assert.Equal(newSerial, Assert.Single(RenewedFrom(encryption.SerialNumber)));
        var renewed = await app.GetCertificateAsync(newSerial);
        Assert.Equal(email, renewed.Email);
        Assert.Equal("encryption", renewed.Profile);
        Assert.Empty(RenewedFrom(signing.SerialNumber));
        Assert.Equal("valid", (await app.GetCertificateAsync(signing.SerialNumber)).Status);
    }
}
