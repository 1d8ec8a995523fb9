using System.Net;
using CertPortal.Security;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Security;

/// <summary>Signing out ends the session on the server: a copy of the cookie taken before the sign-out (another browser
/// of the same person, a stolen value) no longer opens the console.</summary>
public sealed class SignOutTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    private const string Password = "sign-out-password-1";

    [Fact]
    public async Task A_copy_of_the_cookie_taken_before_sign_out_is_refused_afterwards()
    {
        var name = "signout-" + Guid.NewGuid().ToString("N")[..8];
        var (id, _) = await app.CreateAccountAsync(name, Roles.Administrator, Password);
        var jar = new CookieContainer();
        using var browser = await ConsoleSignIn.SignedInClientAsync(app.BaseUrl, name, Password, jar);
        using var elsewhere = await ConsoleSignIn.SignedInClientAsync(app.BaseUrl, name, Password);
        var copy = jar.GetCookieHeader(new Uri(app.BaseUrl));
        Assert.Contains("certportal=", copy);
        Assert.Equal(HttpStatusCode.OK, (await WithCookie(copy).GetAsync("/admin")).StatusCode);

        var signOut = await browser.PostAsync("/account/logout", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["__RequestVerificationToken"] = await ConsoleSignIn.AntiforgeryTokenAsync(browser, "/account/logout"),
        }));
        Assert.Equal(HttpStatusCode.Redirect, signOut.StatusCode);

        AssertSentToSignIn(await WithCookie(copy).GetAsync("/admin"));
        // Every session of the account ends: the other browser signs in again.
        AssertSentToSignIn(await elsewhere.GetAsync("/admin"));
        Assert.Contains("account.signed-out", await app.Admin.GetStringAsync($"/api/v1/audit?target=account:{id}"));

        using var again = await ConsoleSignIn.SignedInClientAsync(app.BaseUrl, name, Password);
        Assert.Equal(HttpStatusCode.OK, (await again.GetAsync("/admin")).StatusCode);
        AssertSentToSignIn(await WithCookie(copy).GetAsync("/admin"));
    }

    [Fact]
    public async Task Signing_out_without_a_session_changes_nothing()
    {
        var name = "signout-" + Guid.NewGuid().ToString("N")[..8];
        await app.CreateAccountAsync(name, Roles.Administrator, Password);
        using var browser = await ConsoleSignIn.SignedInClientAsync(app.BaseUrl, name, Password);

        using var anonymous = new HttpClient(new HttpClientHandler { CookieContainer = new CookieContainer(), AllowAutoRedirect = false })
            { BaseAddress = new Uri(app.BaseUrl) };
        var signOut = await anonymous.PostAsync("/account/logout", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["__RequestVerificationToken"] = await ConsoleSignIn.AntiforgeryTokenAsync(anonymous, "/account/logout"),
        }));
        Assert.Equal(HttpStatusCode.Redirect, signOut.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await browser.GetAsync("/admin")).StatusCode);
    }

    private HttpClient WithCookie(string cookieHeader)
    {
        var http = new HttpClient(new HttpClientHandler { UseCookies = false, AllowAutoRedirect = false }) { BaseAddress = new Uri(app.BaseUrl) };
        http.DefaultRequestHeaders.Add("Cookie", cookieHeader);
        return http;
    }

    private static void AssertSentToSignIn(HttpResponseMessage response)
    {
        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        Assert.Contains("/account/login", response.Headers.Location!.ToString());
    }
}
