using System.Text.Json;
using CertPortal.Tests.Infrastructure;
using Microsoft.Playwright;

namespace CertPortal.Tests.Browser;

/// <summary>The service plus Debian's Chromium driven by Playwright (no browser download: the
/// executable is /usr/bin/chromium, installed by the test command).</summary>
public class BrowserApp : CertPortalApp
{
    public const string Chromium = "/usr/bin/chromium";
    private IPlaywright? _playwright;
    public IBrowser Browser { get; private set; } = null!;

    public static string RepoRoot { get; } = FindRepoRoot();
    public static string ScreenshotDir { get; } = Path.Combine(RepoRoot, "artifacts", "test-results", "screenshots");

    public override async Task InitializeAsync()
    {
        if (!File.Exists(Chromium))
            throw new Xunit.Sdk.XunitException("Chromium is not installed: run the README's test command (it installs chromium).");
        if (!File.Exists(Path.Combine(AppContext.BaseDirectory, "wwwroot", "js", "enroll.bundle.js")))
            throw new Xunit.Sdk.XunitException("wwwroot/js/enroll.bundle.js is missing: build it with `cd web && npm ci && npm run build` (the test command does).");
        await base.InitializeAsync();
        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new()
        {
            Headless = true,
            ExecutablePath = Chromium,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", .. ExtraBrowserArguments],
            Env = BrowserEnvironment,
        });
        Directory.CreateDirectory(ScreenshotDir);
        Assertions.SetDefaultExpectTimeout(30_000);
    }

    /// <summary>More Chromium switches (e.g. --host-resolver-rules for a real host name).</summary>
    protected virtual IEnumerable<string> ExtraBrowserArguments => [];

    /// <summary>Chromium's environment (null: this process's), e.g. a HOME whose NSS database trusts a test CA.</summary>
    protected virtual IEnumerable<KeyValuePair<string, string>>? BrowserEnvironment => null;

    /// <summary>The address people use: the service itself here, the reverse proxy in front of it where there is one.</summary>
    public virtual string PortalBaseUrl => BaseUrl;

    public async Task<IPage> NewPageAsync(bool bypassCsp = false)
    {
        var context = await Browser.NewContextAsync(new() { BaseURL = PortalBaseUrl, AcceptDownloads = true, BypassCSP = bypassCsp });
        var page = await context.NewPageAsync();
        page.SetDefaultTimeout(90_000);
        page.SetDefaultNavigationTimeout(90_000);
        return page;
    }

    /// <summary>A reverse proxy that gives up waiting: the first request to <paramref name="urlPattern"/> reaches the service,
    /// which must answer 201, and the browser gets a 504 instead; later ones pass. Returns the bodies the page sent, in order.</summary>
    public static async Task<List<string>> FirstAnswerLostAt504Async(IPage page, string urlPattern)
    {
        var sent = new List<string>();
        await page.RouteAsync(urlPattern, async route =>
        {
            sent.Add(route.Request.PostData!);
            if (sent.Count > 1)
            {
                await route.ContinueAsync();
                return;
            }
            var made = await route.FetchAsync();
            Assert.Equal(201, made.Status);
            await route.FulfillAsync(new() { Status = 504, ContentType = "text/html", Body = "<html><body>504 Gateway Time-out</body></html>" });
        });
        return sent;
    }

    public static Task ScreenshotAsync(IPage page, string name) =>
        page.ScreenshotAsync(new() { Path = Path.Combine(ScreenshotDir, name + ".png"), FullPage = true });

    public async Task SignInAsync(IPage page, string name, string password)
    {
        await page.GotoAsync("/account/login");
        await page.GetByLabel("Account name").FillAsync(name);
        await page.GetByLabel("Password").FillAsync(password);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        // Not WaitForURL: with the load event (its default) a clean-clone run under load waited 90 s for the load event
        // of a document already replaced (as ConsoleSessionTests' sign-out did), and with WaitUntil Commit a clean-clone run
        // of session 22 waited 90 s in WaitForLoadState, the navigation having committed before the wait began. Expect
        // polls the current URL and then the Sign out button (what the signed-in person sees) on whichever document is current.
        await Assertions.Expect(page).Not.ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/account/login"));
        await Assertions.Expect(page.GetByRole(AriaRole.Button, new() { NameRegex = new System.Text.RegularExpressions.Regex("^Sign out") })).ToBeVisibleAsync();
    }

    /// <summary>Waits until the browser shows the sign-in page (a redirect after a session ended, or after setup). Not
    /// WaitForURL, for the reasons in <see cref="SignInAsync"/>: a clean-clone run of eed5018 waited 90 s in its load-state wait
    /// after a form post's redirect to this page. Expect polls the current URL, then the button the person sees.</summary>
    public static async Task ExpectSignInPageAsync(IPage page)
    {
        await Assertions.Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/account/login"));
        await Assertions.Expect(page.GetByRole(AriaRole.Button, new() { Name = "Sign in" })).ToBeVisibleAsync();
    }

    /// <summary>Runs axe-core (from web/'s lockfile) in the page; returns the serious and critical violations.</summary>
    public static async Task<List<string>> SeriousAccessibilityViolationsAsync(IPage page)
    {
        var axe = new[] { Path.Combine(RepoRoot, "web", "dist", "axe.min.js"), Path.Combine(RepoRoot, "web", "node_modules", "axe-core", "axe.min.js") }
            .FirstOrDefault(File.Exists) ?? throw new Xunit.Sdk.XunitException("axe-core is missing: run `cd web && npm ci && npm run build`.");
        await page.AddScriptTagAsync(new() { Path = axe });
        var violations = await page.EvaluateAsync<JsonElement>(
            "async () => (await axe.run()).violations.map(v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.target.join(' ')) }))");
        return violations.EnumerateArray()
            .Where(v => v.GetProperty("impact").GetString() is "serious" or "critical")
            .Select(v => v.ToString()).ToList();
    }

    public override async Task DisposeAsync()
    {
        if (Browser is not null) await Browser.CloseAsync();
        _playwright?.Dispose();
        await base.DisposeAsync();
    }

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "CertPortal.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
    }
}
