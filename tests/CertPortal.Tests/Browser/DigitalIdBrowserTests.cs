using System.Net.Http.Json;
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
        await admin.WaitForURLAsync("**/account/login");
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
        Assert.StartsWith($"{app.BaseUrl}/enroll?token=cpt_", link);
        await BrowserApp.ScreenshotAsync(admin, "04-token-created");

        // The person opens the link in their own browser.
        var person = await app.NewPageAsync();
        var sentToServer = new List<string>();
        person.Request += (_, request) =>
        {
            if (request.Method == "POST") sentToServer.Add(request.Url + " " + request.PostData);
        };
        await person.GotoAsync(link);
        await Assertions.Expect(person.GetByRole(AriaRole.Heading, new() { Name = "Digital ID for Dana Example" })).ToBeVisibleAsync();
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
        await Assertions.Expect(admin.Locator("#cert-status")).ToContainTextAsync("revoked");
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

/// <summary>The enrollment page and the console in Chromium: keyboard, accessibility, errors, roles.</summary>
public sealed class DigitalIdBrowserTests(BrowserApp app) : IClassFixture<BrowserApp>
{
    [Fact]
    public async Task Enrollment_page_works_with_the_keyboard_alone()
    {
        var email = $"kb.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        var token = await app.CreateTokenAsync(email, "signing", displayName: "Kim Keyboard");
        var page = await app.NewPageAsync();
        await page.GotoAsync($"/enroll?token={Uri.EscapeDataString(token.Token)}");

        async Task TabTo(string id)
        {
            for (var i = 0; i < 30; i++)
            {
                await page.Keyboard.PressAsync("Tab");
                if (await page.EvaluateAsync<string>("() => document.activeElement?.id ?? ''") == id) return;
            }
            throw new Xunit.Sdk.XunitException($"#{id} cannot be reached with Tab");
        }
        await TabTo("key-algorithm");
        await page.Keyboard.PressAsync("ArrowDown"); // RSA-3072
        await page.Keyboard.PressAsync("ArrowDown"); // EC-P256
        await TabTo("password");
        await page.Keyboard.TypeAsync("keyboard-only-pw");
        await page.Keyboard.PressAsync("Tab");
        await page.Keyboard.TypeAsync("keyboard-only-pw");
        await page.Keyboard.PressAsync("Tab");
        Assert.Equal("enroll-submit", await page.EvaluateAsync<string>("() => document.activeElement.id"));
        await page.Keyboard.PressAsync("Enter");
        await Assertions.Expect(page.Locator("#enroll-success")).ToBeVisibleAsync(new() { Timeout = 120_000 });
        // Focus moves to the result, and the download is one Tab and Enter away.
        Assert.Equal("success-heading", await page.EvaluateAsync<string>("() => document.activeElement.id"));
        await page.Keyboard.PressAsync("Tab");
        var download = await page.RunAndWaitForDownloadAsync(() => page.Keyboard.PressAsync("Enter"));
        Assert.Equal("digital-id.p12", download.SuggestedFilename);
        var serial = (await page.Locator("#cert-serial").TextContentAsync())!.Trim();
        Assert.Equal("EC-P256", (await app.GetCertificateAsync(serial)).KeyAlgorithm);
    }

    [Fact]
    public async Task Used_or_unknown_tokens_are_explained_in_plain_words()
    {
        var page = await app.NewPageAsync();
        await page.GotoAsync("/enroll?token=cpt_not-a-real-token");
        await Assertions.Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("The enrollment token is missing or unknown");
        var email = $"used.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        var (cert, _) = await app.IssueAsync(email, "dual");
        var token = (await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/tokens?email={email}")).EnumerateArray().First();
        Assert.Equal("used", token.GetProperty("status").GetString());
        await page.GotoAsync("/enroll");
        await page.GetByLabel("Enrollment token").FillAsync("cpt_" + new string('x', 43));
        await page.GetByRole(AriaRole.Button, new() { Name = "Continue" }).ClickAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("new enrollment link");
        await BrowserApp.ScreenshotAsync(page, "11-invalid-token");
        Assert.NotNull(cert);
    }

    [Fact]
    public async Task Pages_have_no_serious_accessibility_violations_and_send_security_headers()
    {
        var token = await app.CreateTokenAsync($"a11y.{Guid.NewGuid().ToString("N")[..6]}@example.test", "encryption", displayName: "Ada Access");
        await app.CreateAccountAsync("a11y-admin", "administrator", "a11y-password-123");
        var page = await app.NewPageAsync(bypassCsp: true); // axe is injected as a script tag
        var failures = new List<string>();
        async Task Check(string url)
        {
            var response = await page.GotoAsync(url);
            Assert.True(response!.Ok, $"{url}: {response.Status}");
            foreach (var v in await BrowserApp.SeriousAccessibilityViolationsAsync(page)) failures.Add($"{url}: {v}");
        }
        await Check("/");
        await Check("/enroll");
        await Check($"/enroll?token={Uri.EscapeDataString(token.Token)}");
        await Check("/account/login");
        await Check("/setup");
        await app.SignInAsync(page, "a11y-admin", "a11y-password-123");
        foreach (var url in new[] { "/admin", "/admin/tokens", "/admin/certificates", "/admin/audit", "/admin/recoveries" }) await Check(url);
        Assert.True(failures.Count == 0, string.Join('\n', failures));

        using var http = new HttpClient();
        var headers = (await http.GetAsync($"{app.BaseUrl}/enroll")).Headers;
        var csp = string.Join(' ', headers.GetValues("Content-Security-Policy"));
        Assert.Contains("script-src 'self'", csp);
        Assert.DoesNotContain("unsafe-inline", csp);
        Assert.Contains("frame-ancestors 'none'", csp);
        Assert.Equal("no-referrer", headers.GetValues("Referrer-Policy").Single());
        Assert.Equal("nosniff", headers.GetValues("X-Content-Type-Options").Single());
    }

    [Fact]
    public async Task Console_needs_sign_in_auditors_cannot_change_and_forms_need_antiforgery_tokens()
    {
        using var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(app.BaseUrl) };
        var anonymous = await http.GetAsync("/admin/tokens");
        Assert.Equal(System.Net.HttpStatusCode.Redirect, anonymous.StatusCode);
        Assert.Contains("/account/login", anonymous.Headers.Location!.ToString());
        // The API still answers problem+json, never a redirect.
        await Http.AssertProblem(await http.GetAsync("/api/v1/tokens"), System.Net.HttpStatusCode.Unauthorized);
        var anonymousPost = await http.PostAsync("/admin/tokens?handler=Create", new FormUrlEncodedContent(new Dictionary<string, string> { ["Email"] = "x@example.test" }));
        Assert.Equal(System.Net.HttpStatusCode.Redirect, anonymousPost.StatusCode);

        // Signed in, a form post without the antiforgery token (a cross-site forgery) is refused and creates nothing.
        await app.CreateAccountAsync("ui-admin", "administrator", "admin-password-12");
        var adminPage = await app.NewPageAsync();
        await app.SignInAsync(adminPage, "ui-admin", "admin-password-12");
        var forged = await adminPage.Context.APIRequest.PostAsync("/admin/tokens?handler=Create", new()
        {
            Form = adminPage.Context.APIRequest.CreateFormData().Set("Email", "forged@example.test").Set("Profile", "dual").Set("ValidHours", "24"),
        });
        Assert.Equal(400, forged.Status);
        Assert.DoesNotContain("forged@example.test", await app.Admin.GetStringAsync("/api/v1/tokens"));

        await app.CreateAccountAsync("ui-auditor", "auditor", "auditor-password-1");
        var page = await app.NewPageAsync();
        await app.SignInAsync(page, "ui-auditor", "auditor-password-1");
        await page.GotoAsync("/admin/tokens");
        Assert.Equal(0, await page.GetByRole(AriaRole.Button, new() { Name = "Create token" }).CountAsync());

        await app.CreateAccountAsync("ui-agent", "recovery-agent", "agent-password-12");
        var agent = await app.NewPageAsync();
        await app.SignInAsync(agent, "ui-agent", "agent-password-12");
        Assert.EndsWith("/admin/recoveries", agent.Url);
        await BrowserApp.ScreenshotAsync(agent, "12-recoveries");
        await agent.GotoAsync("/admin/certificates");
        Assert.Contains("/account/denied", agent.Url);
    }
}

/// <summary>Where policy requires escrow, the page uses server-side generation and says so plainly.</summary>
public sealed class EscrowedDigitalIdBrowserTests(BrowserApp app) : IClassFixture<BrowserApp>
{
    [Fact]
    public async Task Escrow_policy_makes_the_page_use_the_server_path_and_show_the_notice()
    {
        Tool.Require("openssl", "openssl");
        using var agentDir = new ToolDir("ui-agents");
        await CertPortal.Tests.Escrow.RecoveryAgents.AddRecoveryAgentAsync(app, agentDir);
        await CertPortal.Tests.Escrow.RecoveryAgents.AddRecoveryAgentAsync(app, agentDir, "EC-P256");
        // N = 3 agents by default (Escrow:MinimumAgents): escrow needs that many before the server generates a key.
        await CertPortal.Tests.Escrow.RecoveryAgents.AddRecoveryAgentAsync(app, agentDir);
        var policy = await app.Admin.PutAsJsonAsync("/api/v1/escrow/policy", new { encryptionKeyGeneration = "Required" });
        await Http.EnsureStatus(policy, System.Net.HttpStatusCode.OK);

        var email = $"esc.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        var token = await app.CreateTokenAsync(email, "encryption", displayName: "Eve Escrow");
        var page = await app.NewPageAsync();
        await page.GotoAsync($"/enroll?token={Uri.EscapeDataString(token.Token)}");
        await Assertions.Expect(page.Locator("#escrow-notice")).ToContainTextAsync("kept in escrow");
        await BrowserApp.ScreenshotAsync(page, "13-escrow-notice");
        await page.GetByLabel("Password for the downloaded file").FillAsync("escrowed-p12-pw");
        await page.GetByLabel("Repeat the password").FillAsync("escrowed-p12-pw");
        await page.GetByRole(AriaRole.Button, new() { Name = "Get my digital ID" }).ClickAsync();
        await Assertions.Expect(page.Locator("#enroll-success")).ToBeVisibleAsync(new() { Timeout = 120_000 });
        var serial = (await page.Locator("#cert-serial").TextContentAsync())!.Trim();

        using var dir = new ToolDir("escrow-p12");
        var download = await page.RunAndWaitForDownloadAsync(() => page.GetByRole(AriaRole.Button, new() { Name = "Download digital ID (.p12)" }).ClickAsync());
        await download.SaveAsAsync(dir.File("id.p12"));
        Tool.Run("openssl", ["pkcs12", "-in", dir.File("id.p12"), "-nocerts", "-nodes", "-passin", "pass:escrowed-p12-pw"]).EnsureSuccess();
        using var scope = app.Services.CreateScope();
        Assert.True(await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().KeyEscrows.AnyAsync(e => e.SerialNumber == serial));
    }
}
