using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;
using Microsoft.Playwright;

namespace CertPortal.Tests.Browser;

/// <summary>The enrollment page and the console in Chromium: keyboard, accessibility, errors, roles.</summary>
public sealed class DigitalIdBrowserTests(BrowserApp app) : IClassFixture<BrowserApp>
{
    [Fact]
    public async Task A_new_link_replaces_a_spent_one_and_enter_a_different_token_forgets_it()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        var spent = await app.CreateTokenAsync($"spent.{run}@example.test", "signing", displayName: "Spent Link");
        await app.EnrollAsync(spent.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(spent.Email));
        var fresh = await app.CreateTokenAsync($"fresh.{run}@example.test", "signing", displayName: "Fresh Link");
        var page = await app.NewPageAsync();

        await page.GotoAsync(spent.EnrollmentUrl);
        await Assertions.Expect(page.Locator("#token-used")).ToContainTextAsync("already been used");
        Assert.Equal($"{app.BaseUrl}/enroll", page.Url);

        // The page remembers the spent link for this path, but a new link's fragment wins.
        await page.GotoAsync(fresh.EnrollmentUrl);
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Digital ID for Fresh Link" })).ToBeVisibleAsync();
        await page.ReloadAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Digital ID for Fresh Link" })).ToBeVisibleAsync();

        await page.GotoAsync(spent.EnrollmentUrl);
        await page.GetByRole(AriaRole.Link, new() { Name = "Enter a different token" }).ClickAsync();
        await Assertions.Expect(page.GetByLabel("Enrollment link or token")).ToBeVisibleAsync();
        await page.GotoAsync("/enroll");
        await Assertions.Expect(page.GetByLabel("Enrollment link or token")).ToBeVisibleAsync();
    }

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
        Assert.Equal($"{email}-signing.p12", download.SuggestedFilename);
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
        await page.GetByLabel("Enrollment link or token").FillAsync("cpt_" + new string('x', 43));
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
        await Check("/renew");
        await Check($"/renew?serial={(await app.IssueAsync($"a11y.renew.{Guid.NewGuid().ToString("N")[..6]}@example.test", "signing")).Cert.SerialNumber}");
        await Check("/account/login");
        await Check("/setup");
        await app.SignInAsync(page, "a11y-admin", "a11y-password-123");
        foreach (var url in new[] { "/admin", "/admin/tokens", "/admin/certificates", "/admin/audit", "/admin/recoveries", "/admin/invitations" }) await Check(url);
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
