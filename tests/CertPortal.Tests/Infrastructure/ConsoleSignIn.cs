using System.Net;
using System.Text.RegularExpressions;

namespace CertPortal.Tests.Infrastructure;

/// <summary>Console sign-in through the real form, as a browser posts it (antiforgery field and cookie), without
/// following the redirect. Signed in means a redirect that sets the session cookie.</summary>
public static partial class ConsoleSignIn
{
    public static async Task<(HttpStatusCode Status, string Body, bool SessionCookie)> PostAsync(string baseUrl, string name, string password)
    {
        using var handler = new HttpClientHandler { CookieContainer = new CookieContainer(), AllowAutoRedirect = false };
        using var http = new HttpClient(handler) { BaseAddress = new Uri(baseUrl), Timeout = TimeSpan.FromSeconds(60) };
        var form = await http.GetStringAsync("/account/login");
        var token = AntiforgeryField().Match(form).Groups[1].Value;
        Assert.NotEmpty(token);
        var r = await http.PostAsync("/account/login", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["Name"] = name, ["Password"] = password, ["__RequestVerificationToken"] = token,
        }));
        var session = handler.CookieContainer.GetAllCookies().Any(c => c.Name == "certportal");
        return (r.StatusCode, await r.Content.ReadAsStringAsync(), session);
    }

    /// <summary>True when the name and password open a console session.</summary>
    public static async Task<bool> SucceedsAsync(string baseUrl, string name, string password)
    {
        var (status, _, session) = await PostAsync(baseUrl, name, password);
        return status == HttpStatusCode.Redirect && session;
    }

    /// <summary>A client holding a console session (cookies kept in <paramref name="jar"/> when given, redirects not followed),
    /// for posting console forms.</summary>
    public static async Task<HttpClient> SignedInClientAsync(string baseUrl, string name, string password, CookieContainer? jar = null)
    {
        var handler = new HttpClientHandler { CookieContainer = jar ?? new CookieContainer(), AllowAutoRedirect = false };
        var http = new HttpClient(handler, disposeHandler: true) { BaseAddress = new Uri(baseUrl), Timeout = TimeSpan.FromSeconds(60) };
        var r = await http.PostAsync("/account/login", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["Name"] = name, ["Password"] = password, ["__RequestVerificationToken"] = await AntiforgeryTokenAsync(http, "/account/login"),
        }));
        Assert.Equal(HttpStatusCode.Redirect, r.StatusCode);
        return http;
    }

    /// <summary>The antiforgery field of the form on <paramref name="path"/> (its cookie stays in the client).</summary>
    public static async Task<string> AntiforgeryTokenAsync(HttpClient http, string path)
    {
        var token = AntiforgeryField().Match(await http.GetStringAsync(path)).Groups[1].Value;
        Assert.NotEmpty(token);
        return token;
    }

    [GeneratedRegex("name=\"__RequestVerificationToken\" type=\"hidden\" value=\"([^\"]+)\"")]
    private static partial Regex AntiforgeryField();
}
