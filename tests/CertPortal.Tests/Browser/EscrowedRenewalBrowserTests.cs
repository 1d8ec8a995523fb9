using System.Text.Json;
using CertPortal.Data;
using CertPortal.Tests.Escrow;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;

namespace CertPortal.Tests.Browser;

/// <summary>Encryption keys must be generated and escrowed by the server; three recovery agents; renewal always open.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The agents' directory is disposed in DisposeAsync (IAsyncLifetime), which xunit calls for every fixture.")]
public sealed class EscrowedRenewalBrowserApp : BrowserApp
{
    private readonly ToolDir _agentDir = new("browser-renewal-agents");

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Escrow:EncryptionKeyGeneration"] = "Required",
        ["Renewal:OpensBeforeExpiry"] = "400.00:00:00",
    };

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

/// <summary>A person renews an escrowed encryption ID in Chromium with the .p12 the service gave them: the page opens the
/// file, learns that this ID renews through the server, signs the request with the old key, and downloads the new key the
/// server generated and escrowed, protected by the same password.</summary>
public sealed class EscrowedRenewalBrowserTests(EscrowedRenewalBrowserApp app) : IClassFixture<EscrowedRenewalBrowserApp>
{
    [Fact]
    public async Task Person_renews_an_escrowed_encryption_id_in_the_browser_and_gets_a_new_escrowed_key()
    {
        using var dir = new ToolDir("browser-escrowed-renewal");
        var email = $"iris.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        var enrolled = await app.EnrollServerKeyAsync(email, "RSA-2048");
        var oldSerial = enrolled.GetProperty("serialNumber").GetString()!;
        var oldP12 = dir.Write("old.p12", Convert.FromBase64String(enrolled.GetProperty("pkcs12").GetString()!));

        var page = await app.NewPageAsync();
        var sent = new List<string>();
        page.Request += (_, request) => { if (request.Method == "POST") sent.Add(request.Url + " " + request.PostData); };
        await page.GotoAsync($"/renew?serial={oldSerial}");
        await Assertions.Expect(page.Locator("#escrow-notice")).ToContainTextAsync("kept in escrow");
        await page.GetByLabel("Your digital ID file").SetInputFilesAsync(oldP12);
        await page.GetByLabel("Its password").FillAsync(EscrowApp.Pkcs12Password);
        await page.GetByLabel("Key type of the new digital ID").SelectOptionAsync("RSA-3072");
        await page.GetByRole(AriaRole.Button, new() { Name = "Renew my digital ID" }).ClickAsync();
        await Assertions.Expect(page.Locator("#renew-success")).ToBeVisibleAsync(new() { Timeout = 120_000 });
        await Assertions.Expect(page.Locator("#key-escrowed")).ToBeVisibleAsync();
        await BrowserApp.ScreenshotAsync(page, "renewal-03-escrowed");
        var newSerial = (await page.Locator("#cert-serial").TextContentAsync())!.Trim();
        Assert.NotEqual(oldSerial, newSerial);

        var download = await page.RunAndWaitForDownloadAsync(() => page.GetByRole(AriaRole.Button, new() { Name = "Download new digital ID (.p12)" }).ClickAsync());
        Assert.Equal($"{email}-encryption.p12", download.SuggestedFilename);
        var newP12 = dir.File("new.p12");
        await download.SaveAsAsync(newP12);

        // OpenSSL opens the new file with the same password: an RSA-3072 key that belongs to the renewed certificate.
        var key = Tool.Run("openssl", ["pkcs12", "-in", newP12, "-nocerts", "-nodes", "-passin", $"pass:{EscrowApp.Pkcs12Password}"]).EnsureSuccess().Stdout;
        var keyFile = dir.Write("new.key", key);
        Assert.Contains("3072 bit", Tool.Run("openssl", ["pkey", "-in", keyFile, "-noout", "-text"]).EnsureSuccess().Stdout);
        var issued = await app.GetCertificateAsync(newSerial);
        Assert.Equal("encryption", issued.Profile);
        var certPub = Tool.Run("openssl", ["x509", "-noout", "-pubkey", "-in", dir.Write("new.pem", issued.CertificatePem)]).EnsureSuccess().Stdout;
        Assert.Equal(certPub, Tool.Run("openssl", ["pkey", "-pubout", "-in", keyFile]).EnsureSuccess().Stdout);
        Assert.Equal("valid", (await app.GetCertificateAsync(oldSerial)).Status);
        using (var scope = app.Services.CreateScope())
            Assert.True(await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().KeyEscrows.AnyAsync(e => e.SerialNumber == newSerial));

        // What went to the server: the signed request, the password for the new file, a requestId, the ID the link named; never
        // the old file or key.
        var renewal = Assert.Single(sent, s => s.Contains("/api/v1/renewals"));
        var body = JsonDocument.Parse(renewal[(renewal.IndexOf(' ') + 1)..]).RootElement;
        Assert.Equal(["cms", "pkcs12Password", "requestId", "expectedSerialNumber"], body.EnumerateObject().Select(p => p.Name));
        Assert.Equal(oldSerial, body.GetProperty("expectedSerialNumber").GetString());
        // The old key signed the key type and the request: the SHA-256 of this requestId and password, not the requestId itself.
        var signed = new System.Security.Cryptography.Pkcs.SignedCms();
        signed.Decode(Convert.FromBase64String(body.GetProperty("cms").GetString()!));
        var content = JsonDocument.Parse(signed.ContentInfo.Content).RootElement;
        Assert.Equal("RSA-3072", content.GetProperty("keyAlgorithm").GetString());
        Assert.Equal(Renewal.EscrowedRenewalTests.Binding(body.GetProperty("requestId").GetString()!, EscrowApp.Pkcs12Password),
            content.GetProperty("requestIdAndPasswordSha256").GetString());
        Assert.DoesNotContain(body.GetProperty("requestId").GetString()!, System.Text.Encoding.UTF8.GetString(signed.ContentInfo.Content));
    }

    /// <summary>The renewal is made, but a reverse proxy in front answers 504 (it gave up waiting): the page asks once more with
    /// the same request, and so collects the key the server made, instead of telling the person it failed (a second try of
    /// their own, with a new requestId, would then be refused as already renewed).</summary>
    [Fact]
    public async Task A_renewal_whose_answer_a_proxy_replaced_with_504_is_collected_by_the_page()
    {
        using var dir = new ToolDir("browser-escrowed-renewal-504");
        var email = $"ivan.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        var enrolled = await app.EnrollServerKeyAsync(email, "RSA-2048");
        var oldSerial = enrolled.GetProperty("serialNumber").GetString()!;
        var oldP12 = dir.Write("old.p12", Convert.FromBase64String(enrolled.GetProperty("pkcs12").GetString()!));

        var page = await app.NewPageAsync();
        var renewals = await BrowserApp.FirstAnswerLostAt504Async(page, "**/api/v1/renewals");
        await page.GotoAsync($"/renew?serial={oldSerial}");
        await page.GetByLabel("Your digital ID file").SetInputFilesAsync(oldP12);
        await page.GetByLabel("Its password").FillAsync(EscrowApp.Pkcs12Password);
        await page.GetByRole(AriaRole.Button, new() { Name = "Renew my digital ID" }).ClickAsync();
        await Assertions.Expect(page.Locator("#renew-success")).ToBeVisibleAsync(new() { Timeout = 120_000 });

        Assert.Equal(2, renewals.Count);
        Assert.Equal(renewals[0], renewals[1]); // the same request, so the same requestId
        var newSerial = (await page.Locator("#cert-serial").TextContentAsync())!.Trim();
        using var scope = app.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.Equal(newSerial, Assert.Single(await db.Certificates.Where(c => c.RenewalOf == oldSerial).Select(c => c.SerialNumber).ToListAsync()));
    }
}
