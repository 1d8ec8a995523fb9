using System.Net;
using System.Net.Http.Json;
using CertPortal.Security;
using CertPortal.Tests.Api;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Security;

/// <summary>Console sign-in through the real form, with a fake clock for the window.</summary>
public sealed class SignInThrottleTests(ClockedApp app) : IClassFixture<ClockedApp>
{
    private const string Password = "right password 1234";

    [Fact]
    public async Task Five_failures_lock_the_name_for_fifteen_minutes_even_with_the_right_password()
    {
        var name = "guarded-" + Guid.NewGuid().ToString("N")[..6];
        var other = "bystander-" + Guid.NewGuid().ToString("N")[..6];
        await app.CreateAccountAsync(name, Roles.Administrator, Password);
        await app.CreateAccountAsync(other, Roles.Administrator, Password);

        for (var i = 0; i < SignInThrottle.MaxFailures; i++)
        {
            var (status, body, session) = await ConsoleSignIn.PostAsync(app.BaseUrl, name, "wrong guess " + i);
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.False(session);
            Assert.Contains("name or password is not right", body);
        }
        // Locked: the right password is refused without being checked, and no session cookie is issued.
        var locked = await ConsoleSignIn.PostAsync(app.BaseUrl, name, Password);
        Assert.Equal(HttpStatusCode.OK, locked.Status);
        Assert.False(locked.SessionCookie);
        Assert.Contains("Too many failed sign-ins", locked.Body);
        // Case and spaces do not make a fresh name.
        Assert.Contains("Too many failed sign-ins", (await ConsoleSignIn.PostAsync(app.BaseUrl, "  " + name.ToUpperInvariant(), Password)).Body);
        // Other accounts are not affected.
        Assert.True(await ConsoleSignIn.SucceedsAsync(app.BaseUrl, other, Password));

        // Throttled attempts do not extend the lock: after the window the right password works again.
        app.Clock!.Advance(SignInThrottle.Window + TimeSpan.FromSeconds(1));
        Assert.True(await ConsoleSignIn.SucceedsAsync(app.BaseUrl, name, Password));
    }

    [Fact]
    public async Task Guesses_sent_at_once_are_checked_no_more_often_than_the_throttle_allows()
    {
        var name = "burst-" + Guid.NewGuid().ToString("N")[..6];
        await app.CreateAccountAsync(name, Roles.Administrator, Password);
        // Each failure was counted only once recorded, after the password check: 30 guesses at once were all checked.
        var answers = await Task.WhenAll(Enumerable.Range(0, 30).Select(i => ConsoleSignIn.PostAsync(app.BaseUrl, name, "burst guess " + i)));
        Assert.All(answers, a => Assert.False(a.SessionCookie));
        var checkedGuesses = answers.Count(a => a.Body.Contains("name or password is not right", StringComparison.Ordinal));
        Assert.InRange(checkedGuesses, 1, SignInThrottle.MaxFailures);
        var failures = await app.Admin.GetFromJsonAsync<System.Text.Json.JsonElement>($"/api/v1/audit?action={SignInThrottle.FailedAction}&pageSize=500");
        Assert.Equal(checkedGuesses, failures.EnumerateArray().Count(e => e.GetProperty("actor").GetString() == name));
    }

    [Fact]
    public async Task A_successful_sign_in_clears_earlier_failures()
    {
        var name = "forgetful-" + Guid.NewGuid().ToString("N")[..6];
        await app.CreateAccountAsync(name, Roles.Auditor, Password);
        for (var i = 0; i < SignInThrottle.MaxFailures - 1; i++) await ConsoleSignIn.PostAsync(app.BaseUrl, name, "typo " + i);
        Assert.True(await ConsoleSignIn.SucceedsAsync(app.BaseUrl, name, Password));
        for (var i = 0; i < SignInThrottle.MaxFailures - 1; i++) await ConsoleSignIn.PostAsync(app.BaseUrl, name, "typo again " + i);
        Assert.True(await ConsoleSignIn.SucceedsAsync(app.BaseUrl, name, Password));
    }
}
