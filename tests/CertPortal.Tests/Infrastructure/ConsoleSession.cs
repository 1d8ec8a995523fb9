using System.Net;
using System.Text.RegularExpressions;

namespace CertPortal.Tests.Infrastructure;

/// <summary>A console session that crosses nodes as a load balancer would send a browser: the sign-in form is
/// fetched from one node, posted to another, and the session cookie then used on a third. Each step only
/// works when the nodes share Data Protection's keys (antiforgery token, then session cookie).</summary>
public static partial class ConsoleSession
{
    public static async Task<HttpStatusCode> AdminPageAcrossNodesAsync(string formFrom, string postTo, string useOn, string name, string password)
    {
        // Cookies are per host, not per port (RFC 6265 §8.5): the nodes on 127.0.0.1 share the jar like one site.
        var cookies = new CookieContainer();
        using var handler = new HttpClientHandler { CookieContainer = cookies, AllowAutoRedirect = false };
        using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(60) };
        var form = await http.GetStringAsync(formFrom + "/account/login");
        var token = AntiforgeryField().Match(form).Groups[1].Value;
        Assert.NotEmpty(token);
        var signIn = await http.PostAsync(postTo + "/account/login", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["Name"] = name, ["Password"] = password, ["__RequestVerificationToken"] = token,
        }));
        Assert.True(signIn.StatusCode == HttpStatusCode.Redirect, $"sign-in on {postTo} answered {(int)signIn.StatusCode}: {await signIn.Content.ReadAsStringAsync()}");
        return (await http.GetAsync(useOn + "/admin")).StatusCode;
    }

    [GeneratedRegex("name=\"__RequestVerificationToken\" type=\"hidden\" value=\"([^\"]+)\"")]
    private static partial Regex AntiforgeryField();
}
