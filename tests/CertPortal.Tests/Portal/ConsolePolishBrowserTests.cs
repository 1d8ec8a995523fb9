using CertPortal.Tests.Browser;
using Microsoft.Playwright;

namespace CertPortal.Tests.Portal;

/// <summary>The console reads like a person wrote it: humane names, plurals, empty states, confirmations, the right
/// words for a hold, and pages that fit a 390 px phone and a 1280 px laptop.</summary>
public sealed class ConsolePolishBrowserTests(BrowserApp app) : IClassFixture<BrowserApp>
{
    private const string Password = "polish-password-42";

    private async Task<IPage> AdminAsync(int width = 1280)
    {
        var name = $"polish-{Guid.NewGuid().ToString("N")[..6]}";
        await app.CreateAccountAsync(name, "administrator", Password);
        var context = await app.Browser.NewContextAsync(new()
        {
            BaseURL = app.PortalBaseUrl, ViewportSize = new() { Width = width, Height = 900 }, BypassCSP = true, // axe is injected
        });
        var page = await context.NewPageAsync();
        page.SetDefaultTimeout(90_000);
        await app.SignInAsync(page, name, Password);
        return page;
    }

    [Fact]
    public async Task Search_ignores_case_names_are_humane_holds_say_hold_and_lists_count_in_words()
    {
        var email = $"Casey.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        var (cert, _) = await app.IssueAsync(email, "signing");
        var page = await AdminAsync();

        await page.GotoAsync($"/admin/certificates?email={Uri.EscapeDataString(email.ToUpperInvariant())}");
        await Assertions.Expect(page.Locator("#result-count")).ToHaveTextAsync("1 certificate.");
        var row = page.Locator("tbody tr");
        await Assertions.Expect(row).ToContainTextAsync("Valid");
        await Assertions.Expect(row).ToContainTextAsync("Signing");
        await page.GotoAsync("/admin/certificates?email=nobody-at-all");
        await Assertions.Expect(page.Locator("#result-count")).ToHaveTextAsync("No certificates match.");
        Assert.Equal(0, await page.Locator("table").CountAsync());

        await page.GotoAsync($"/admin/certificates/{cert.SerialNumber}");
        await Assertions.Expect(page.Locator("#back-to-list")).ToHaveAttributeAsync("href", "/admin/certificates");
        await Assertions.Expect(page.Locator("#reason option[value=keyCompromise]")).ToHaveTextAsync("Key compromised (lost or stolen)");
        await page.GetByLabel("Reason (RFC 5280)").SelectOptionAsync("certificateHold");
        await Assertions.Expect(page.Locator("#revoke-button")).ToHaveTextAsync("Place on hold");
        await Assertions.Expect(page.Locator("label[for=confirm]")).ToContainTextAsync("until the hold is released");
        // (Placing the hold itself is refused for this strict-policy certificate, S/MIME BR 7.2.2: the wording is what is tested.)
        await page.GetByLabel("Reason (RFC 5280)").SelectOptionAsync("superseded");
        await Assertions.Expect(page.Locator("#revoke-button")).ToHaveTextAsync("Revoke certificate");
        await Assertions.Expect(page.Locator("label[for=confirm]")).ToContainTextAsync("for good");
        await Assertions.Expect(page.Locator("#cert-status")).ToHaveTextAsync("Valid");
        Assert.DoesNotContain("keyCompromise", await page.Locator("main").InnerTextAsync());
    }

    [Fact]
    public async Task Revoking_a_token_asks_first_and_form_errors_use_the_forms_words()
    {
        var email = $"tok.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        await app.CreateTokenAsync(email, "dual");
        var page = await AdminAsync();
        await page.GotoAsync("/admin/tokens");
        var asked = new List<string>();
        var accept = false;
        page.Dialog += async (_, d) => { asked.Add(d.Message); if (accept) await d.AcceptAsync(); else await d.DismissAsync(); };
        var revoke = page.GetByRole(AriaRole.Button, new() { Name = $"Revoke token for {email}" });
        await revoke.ClickAsync();
        Assert.Contains(email, Assert.Single(asked));
        await Assertions.Expect(page.Locator("tr", new() { HasText = email })).ToContainTextAsync("Waiting to be used");
        accept = true;
        await revoke.ClickAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync($"Token for {email} revoked.");
        await Assertions.Expect(page.Locator("tr", new() { HasText = email })).ToContainTextAsync("Revoked");

        await page.GetByLabel("E-mail address").FillAsync($"hours.{Guid.NewGuid().ToString("N")[..6]}@example.test");
        await page.GetByLabel("Valid for (hours)").FillAsync("9999");
        await page.GetByRole(AriaRole.Button, new() { Name = "Create token" }).ClickAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Alert)).ToHaveTextAsync("\"Valid for\" must be between 1 and 720 hours.");

        // Setup is closed once an administrator exists: the sign-in page no longer points to it.
        var anonymous = await app.NewPageAsync();
        await anonymous.GotoAsync("/account/login");
        Assert.Equal(0, await anonymous.Locator("#setup-hint").CountAsync());
        Assert.DoesNotContain("No administrator yet", await anonymous.ContentAsync());
    }

    [Fact]
    public async Task Pages_fit_a_390_px_phone_and_the_audit_log_a_1280_px_screen_and_stay_accessible()
    {
        var email = $"a.very.long.mailbox.name.{Guid.NewGuid().ToString("N")[..6]}@subdomain.example.test";
        var (cert, _) = await app.IssueAsync(email, "dual");
        var token = await app.CreateTokenAsync($"another.long.mailbox.{Guid.NewGuid().ToString("N")[..6]}@example.test", "encryption", "Ann Other-Longname");
        await app.Admin.DeleteAsync("/api/v1/tokens/00000000-0000-0000-0000-000000000000"); // a 404 problem, nothing in the audit
        var failures = new List<string>();

        async Task Measure(IPage page, string url, int width, string? screenshot = null)
        {
            var response = await page.GotoAsync(url);
            Assert.True(response!.Ok, $"{url}: {response.Status}");
            var scroll = await page.EvaluateAsync<int>("() => document.documentElement.scrollWidth");
            if (scroll > width) failures.Add($"{url} at {width} px is {scroll} px wide");
            foreach (var v in await BrowserApp.SeriousAccessibilityViolationsAsync(page)) failures.Add($"{url}: {v}");
            if (screenshot is not null) await BrowserApp.ScreenshotAsync(page, screenshot);
        }

        var phone = await AdminAsync(390);
        await Measure(phone, "/admin", 390);
        await Measure(phone, "/admin/tokens", 390, "20-tokens-390");
        await Measure(phone, "/admin/certificates", 390, "21-certificates-390");
        await Measure(phone, $"/admin/certificates/{cert.SerialNumber}", 390, "22-certificate-390");
        await Measure(phone, "/admin/audit", 390);
        await Measure(phone, "/admin/recoveries", 390);
        await Measure(phone, $"/enroll?token={Uri.EscapeDataString(token.Token)}", 390, "23-enroll-390");
        await Measure(phone, "/enroll", 390);
        var laptop = await AdminAsync(1280);
        await Measure(laptop, "/admin/audit", 1280, "24-audit-1280");
        await Measure(laptop, "/admin/tokens", 1280);
        Assert.True(failures.Count == 0, string.Join('\n', failures));

        // The audit log shows details as names and values, not JSON, and filters by what and who.
        await laptop.GotoAsync($"/admin/audit?action=certificate.issued&target={cert.SerialNumber}");
        var rows = laptop.Locator("table.audit tbody tr");
        await Assertions.Expect(rows).ToHaveCountAsync(1);
        Assert.DoesNotContain("{\"", await rows.InnerTextAsync());
        await laptop.GotoAsync("/admin/audit?actor=nobody-did-this");
        await Assertions.Expect(laptop.Locator("#no-events")).ToHaveTextAsync("No audit events match.");
    }
}
