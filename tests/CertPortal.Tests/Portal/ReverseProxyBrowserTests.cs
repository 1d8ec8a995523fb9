using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Security;
using CertPortal.Tests.Browser;
using CertPortal.Tests.Infrastructure;
using Microsoft.Playwright;

namespace CertPortal.Tests.Portal;

/// <summary>CertPortal as an organisation runs it: nginx terminates TLS for a real host name with a certificate
/// from a test CA that Chromium trusts (NSS database in its HOME), and forwards to the service, which believes
/// X-Forwarded-* from nginx's address only. PublicBaseUrl (CRL/AIA) stays the service's http address.</summary>
public sealed class ProxiedPortalApp : BrowserApp
{
    public const string HostName = "portal.example.test";
    public Nginx Proxy { get; }

    public ProxiedPortalApp() => Proxy = new Nginx(HostName, Port);

    public override string PortalBaseUrl => Proxy.BaseUrl;

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["PortalUrl"] = Proxy.BaseUrl,
        ["ReverseProxy:KnownProxies:0"] = Nginx.ProxyAddress,
    };

    protected override IEnumerable<string> ExtraBrowserArguments => [$"--host-resolver-rules=MAP {HostName} 127.0.0.1"];

    protected override IEnumerable<KeyValuePair<string, string>>? BrowserEnvironment
    {
        get
        {
            var env = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
                .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? "");
            env["HOME"] = Proxy.BrowserHomeTrustingTestCa();
            return env;
        }
    }

    public override async Task InitializeAsync()
    {
        Proxy.Start();
        await base.InitializeAsync();
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        Proxy.Dispose();
    }
}

public sealed class ReverseProxyBrowserTests(ProxiedPortalApp app) : IClassFixture<ProxiedPortalApp>
{
    [Fact]
    public async Task Behind_nginx_on_https_the_console_and_the_emailed_link_work_with_secure_cookies_hsts_and_the_clients_address()
    {
        Tool.Require("openssl", "openssl");
        await app.CreateAccountAsync("proxy-admin", "administrator", "proxy-password-42");
        var admin = await app.NewPageAsync();
        await app.SignInAsync(admin, "proxy-admin", "proxy-password-42");
        Assert.StartsWith($"https://{ProxiedPortalApp.HostName}:", admin.Url);

        // Every cookie the console sets is Secure; the page is sent with HSTS.
        var cookies = await admin.Context.CookiesAsync();
        Assert.Contains(cookies, c => c.Name == "certportal");
        Assert.All(cookies, c => Assert.True(c.Secure, $"cookie {c.Name} is not Secure"));
        var console = await admin.GotoAsync("/admin/tokens");
        Assert.StartsWith("max-age=", (await console!.AllHeadersAsync())["strict-transport-security"]);

        // The token's link is the portal's https address, in the console and in the API response.
        var email = $"proxied.{Guid.NewGuid().ToString("N")[..6]}@example.com";
        await admin.GetByLabel("E-mail address").FillAsync(email);
        await admin.GetByLabel("Display name").FillAsync("Pat Proxied");
        await admin.GetByLabel("Signing only").CheckAsync();
        await admin.GetByRole(AriaRole.Button, new() { Name = "Create token" }).ClickAsync();
        var link = await admin.Locator("#enrollment-link").InputValueAsync();
        Assert.StartsWith($"{app.Proxy.BaseUrl}/enroll#token=cpt_", link);
        var created = await (await app.Admin.PostAsJsonAsync("/api/v1/tokens", new { email = "apiurl@example.com", profile = "signing" }))
            .Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal($"{app.Proxy.BaseUrl}/enroll#token={Uri.EscapeDataString(created.GetProperty("token").GetString()!)}",
            created.GetProperty("enrollmentUrl").GetString());

        // The person follows the link: a secure context on a real host name, so WebCrypto makes the key.
        var person = await app.NewPageAsync();
        await person.GotoAsync(link);
        Assert.True(await person.EvaluateAsync<bool>("() => window.isSecureContext && !!crypto.subtle"));
        await person.GetByLabel("Key type").SelectOptionAsync("EC-P256");
        await person.GetByLabel("Password for the downloaded file").FillAsync("proxied p12 pw");
        await person.GetByLabel("Repeat the password").FillAsync("proxied p12 pw");
        await person.GetByRole(AriaRole.Button, new() { Name = "Get my digital ID" }).ClickAsync();
        await Assertions.Expect(person.Locator("#enroll-success")).ToBeVisibleAsync(new() { Timeout = 120_000 });
        using var dir = new ToolDir("proxied-p12");
        var download = await person.RunAndWaitForDownloadAsync(() => person.Locator("#download-p12").ClickAsync());
        await download.SaveAsAsync(dir.File("id.p12"));
        var certs = Tool.Run("openssl", ["pkcs12", "-in", dir.File("id.p12"), "-nokeys", "-passin", "pass:proxied p12 pw"]).EnsureSuccess().Stdout;
        Assert.Contains(email, Tool.Run("openssl", ["x509", "-noout", "-subject"], stdin: certs).EnsureSuccess().Stdout);

        // The token never reached a request line or a Referer: the proxy's access log has the page and its POST only.
        var token = Uri.UnescapeDataString(new Uri(link).Fragment["#token=".Length..]);
        var accessLog = app.Proxy.AccessLog();
        Assert.Contains("\"GET /enroll HTTP/", accessLog);
        Assert.Contains("\"POST /enroll HTTP/", accessLog);
        Assert.DoesNotContain(token["cpt_".Length..], accessLog);

        // The audit log records the browser's address, not nginx's.
        var signIns = await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/audit?action={SignInThrottle.SucceededAction}&pageSize=500");
        var details = signIns.EnumerateArray().Select(e => e.GetProperty("details").GetString()).Single(d => d!.Contains("address"));
        Assert.Contains("\"127.0.0.1\"", details);
        Assert.DoesNotContain(Nginx.ProxyAddress, details);
    }

    [Fact]
    public async Task Over_plain_http_on_the_host_name_the_page_explains_it_needs_the_https_address()
    {
        var token = await app.CreateTokenAsync($"plain.{Guid.NewGuid().ToString("N")[..6]}@example.com", "signing");
        var page = await app.NewPageAsync();
        await page.GotoAsync($"http://{ProxiedPortalApp.HostName}:{app.Port}/enroll#token={Uri.EscapeDataString(token.Token)}");
        Assert.False(await page.EvaluateAsync<bool>("() => window.isSecureContext"));
        await Assertions.Expect(page.Locator("#https-needed")).ToContainTextAsync("https");
        Assert.Equal(0, await page.Locator("#enroll-form").CountAsync());
        Assert.Equal(token.EnrollmentUrl, await page.Locator("#secure-link").GetAttributeAsync("href"));
    }

    [Fact]
    public async Task Forwarded_headers_from_anyone_but_the_configured_proxy_are_ignored()
    {
        using var http = new HttpClient { BaseAddress = new Uri(app.BaseUrl) };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/account/login");
        request.Headers.Add("X-Forwarded-Proto", "https");
        request.Headers.Add("X-Forwarded-For", "203.0.113.9");
        var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.False(response.Headers.Contains("Strict-Transport-Security"));
        Assert.DoesNotContain(response.Headers.TryGetValues("Set-Cookie", out var c) ? c : [], v => v.Contains("secure", StringComparison.OrdinalIgnoreCase));
    }
}
