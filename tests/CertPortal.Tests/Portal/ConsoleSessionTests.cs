using System.Net;
using System.Net.Http.Json;
using CertPortal.Tests.Browser;
using CertPortal.Tests.Infrastructure;
using Microsoft.Playwright;

namespace CertPortal.Tests.Portal;

/// <summary>Console sessions follow their account (disable, demote), sign out works from every page, private pages
/// are not cached, and browsers get HTML error pages while the API keeps problem+json.</summary>
public sealed class ConsoleSessionTests(BrowserApp app) : IClassFixture<BrowserApp>
{
    private static string Unique(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..6]}";

    [Fact]
    public async Task Disabling_an_administrator_ends_their_open_session_at_the_next_request()
    {
        var name = Unique("disabled");
        // Another administrator, so that this one is not the last (which may be neither disabled nor demoted).
        await app.CreateAccountAsync(Unique("keeper"), "administrator");
        var (id, _) = await app.CreateAccountAsync(name, "administrator", "session-password-1");
        var page = await app.NewPageAsync();
        await app.SignInAsync(page, name, "session-password-1");
        await page.GotoAsync("/admin/tokens");
        await Assertions.Expect(page.GetByRole(AriaRole.Button, new() { Name = "Create token" })).ToBeVisibleAsync();

        await Http.EnsureStatus(await app.Admin.DeleteAsync($"/api/v1/accounts/{id}"), HttpStatusCode.OK);
        await page.GetByLabel("E-mail address").FillAsync("after-disable@example.test");
        await page.GetByRole(AriaRole.Button, new() { Name = "Create token" }).ClickAsync();
        await BrowserApp.ExpectSignInPageAsync(page);
        Assert.DoesNotContain("after-disable@example.test", await app.Admin.GetStringAsync("/api/v1/tokens"));
        Assert.DoesNotContain(await page.Context.CookiesAsync(), c => c.Name == "certportal");
    }

    [Fact]
    public async Task Demoting_an_administrator_to_auditor_refuses_their_write_actions_at_once()
    {
        var name = Unique("demoted");
        // Another administrator, so that this one is not the last (which may be neither disabled nor demoted).
        await app.CreateAccountAsync(Unique("keeper"), "administrator");
        var (id, _) = await app.CreateAccountAsync(name, "administrator", "session-password-2");
        var page = await app.NewPageAsync();
        await app.SignInAsync(page, name, "session-password-2");
        await page.GotoAsync("/admin/tokens");

        var demoted = await app.Admin.PutAsJsonAsync($"/api/v1/accounts/{id}/role", new { role = "auditor" });
        await Http.EnsureStatus(demoted, HttpStatusCode.OK);
        await page.GetByLabel("E-mail address").FillAsync("after-demotion@example.test");
        await page.GetByRole(AriaRole.Button, new() { Name = "Create token" }).ClickAsync();
        await BrowserApp.ExpectSignInPageAsync(page);
        Assert.DoesNotContain("after-demotion@example.test", await app.Admin.GetStringAsync("/api/v1/tokens"));

        // Signed in again, the account is an auditor: it sees tokens but cannot create them.
        await app.SignInAsync(page, name, "session-password-2");
        await page.GotoAsync("/admin/tokens");
        Assert.Equal(0, await page.GetByRole(AriaRole.Button, new() { Name = "Create token" }).CountAsync());
        await Http.AssertProblem(await app.Admin.PutAsJsonAsync($"/api/v1/accounts/{id}/role", new { role = "root" }), HttpStatusCode.UnprocessableEntity);
        var audit = await app.Admin.GetStringAsync($"/api/v1/audit?target=account:{id}");
        Assert.Contains("account.role-changed", audit);
    }

    [Fact]
    public async Task Sign_out_in_the_header_works_on_every_page()
    {
        var name = Unique("signout");
        await app.CreateAccountAsync(name, "administrator", "session-password-3");
        var page = await app.NewPageAsync();
        foreach (var url in new[] { "/", "/enroll", "/admin", "/admin/tokens", "/admin/certificates", "/admin/audit", "/admin/recoveries" })
        {
            await app.SignInAsync(page, name, "session-password-3");
            await page.GotoAsync(url);
            await page.GetByRole(AriaRole.Button, new() { Name = $"Sign out {name}" }).ClickAsync();
            // Not WaitForURL: on "/" the URL matches before the sign-out's own navigation, and under load one run waited 90 s
            // for a load event of a document that had been replaced; with WaitUntil Commit the wait can begin after the commit
            // and wait for it in vain (BrowserApp.SignInAsync). Expect polls the current URL, then the link the person sees.
            await Assertions.Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex(@"^https?://[^/]+/([?#].*)?$"));
            await Assertions.Expect(page.GetByRole(AriaRole.Link, new() { Name = "Sign in" })).ToBeVisibleAsync();
            var console = await page.GotoAsync("/admin");
            Assert.Contains("/account/login", console!.Url);
        }
    }

    [Fact]
    public async Task Private_pages_are_never_cached_and_errors_are_html_for_browsers_and_problems_for_the_api()
    {
        var name = Unique("nostore");
        await app.CreateAccountAsync(name, "administrator", "session-password-4");
        var page = await app.NewPageAsync();
        await app.SignInAsync(page, name, "session-password-4");
        foreach (var url in new[] { "/admin", "/admin/tokens", "/admin/certificates", "/admin/audit", "/admin/recoveries", "/enroll" })
        {
            var response = await page.GotoAsync(url);
            Assert.Contains("no-store", (await response!.AllHeadersAsync())["cache-control"]);
        }
        var token = await app.CreateTokenAsync($"{Unique("ns")}@example.test");
        using var http = new HttpClient { BaseAddress = new Uri(app.BaseUrl) };
        Assert.True((await http.GetAsync($"/enroll?token={token.Token}")).Headers.CacheControl!.NoStore);

        // A mistyped address and an unknown certificate: HTML with a way back, with the right status.
        var missing = await page.GotoAsync("/no-such-page");
        Assert.Equal(404, missing!.Status);
        Assert.StartsWith("text/html", (await missing.AllHeadersAsync())["content-type"]);
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Page not found" })).ToBeVisibleAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Link, new() { Name = "Go to the start page" })).ToBeVisibleAsync();
        await BrowserApp.ScreenshotAsync(page, "17-not-found");
        var unknown = await page.GotoAsync("/admin/certificates/00DEADBEEF");
        Assert.Equal(404, unknown!.Status);
        await Assertions.Expect(page.GetByRole(AriaRole.Link, new() { Name = "Back to the console" })).ToBeVisibleAsync();

        // A form posted without its antiforgery token: 400 as a page, not raw JSON; nothing created.
        var forged = await page.Context.APIRequest.PostAsync("/admin/tokens?handler=Create", new()
        {
            Form = page.Context.APIRequest.CreateFormData().Set("Email", "forged-html@example.test").Set("Profile", "dual").Set("ValidHours", "24"),
        });
        Assert.Equal(400, forged.Status);
        Assert.StartsWith("text/html", forged.Headers["content-type"]);
        Assert.Contains("could not be used", await forged.TextAsync());

        // The API keeps problem+json.
        await Http.AssertProblem(await http.GetAsync("/api/v1/no-such-endpoint"), HttpStatusCode.NotFound);
        await Http.AssertProblem(await http.GetAsync("/api/v1/certificates/00DEADBEEF"), HttpStatusCode.NotFound);

        var favicon = await http.GetAsync("/favicon.ico");
        Assert.Equal(HttpStatusCode.OK, favicon.StatusCode);
        Assert.Equal("image/x-icon", favicon.Content.Headers.ContentType!.MediaType);
    }
}
