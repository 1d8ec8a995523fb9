using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Security;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Security;

/// <summary>The service with every log message captured.</summary>
public sealed class SignInLogApp : CertPortalApp
{
    public ConcurrentQueue<string> Lines { get; } = new();

    protected override void ConfigureServices(IServiceCollection services) => CapturingLoggerProvider.AddTo(services, Lines);
}

/// <summary>What a failed console sign-in leaves in the audit log and the application log. People type their password into the
/// name field; a name that is no account must therefore appear in neither, while the throttle still counts it.</summary>
public sealed class SignInAuditTests(SignInLogApp app) : IClassFixture<SignInLogApp>
{
    private const string Password = "right password 1234";

    [Fact]
    public async Task A_name_that_is_no_account_is_neither_stored_nor_logged_and_is_still_throttled()
    {
        // What a person who typed the password into the name field sends.
        var typed = "Pa55word-" + Guid.NewGuid().ToString("N")[..10];
        for (var i = 0; i < SignInThrottle.MaxFailures; i++)
            Assert.Contains("name or password is not right", (await ConsoleSignIn.PostAsync(app.BaseUrl, typed, "second try " + i)).Body);
        // Throttled like an account's name, so the answers do not tell which names exist; case and spaces make no fresh name.
        Assert.Contains("Too many failed sign-ins", (await ConsoleSignIn.PostAsync(app.BaseUrl, " " + typed.ToUpperInvariant(), "x")).Body);
        // Another unknown name is its own.
        var other = "another-" + Guid.NewGuid().ToString("N")[..10];
        Assert.Contains("name or password is not right", (await ConsoleSignIn.PostAsync(app.BaseUrl, other, "x")).Body);

        var failed = await ActorsAsync(SignInThrottle.FailedAction);
        var throttled = await ActorsAsync(SignInThrottle.ThrottledAction);
        var audit = await app.Admin.GetStringAsync("/api/v1/audit?pageSize=500");
        var logs = string.Join('\n', app.Lines);
        foreach (var text in new[] { typed, typed.ToLowerInvariant(), typed.ToUpperInvariant(), other })
        {
            Assert.DoesNotContain(text, audit, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain(text, logs, StringComparison.OrdinalIgnoreCase);
        }
        // One actor for the typed name's failures and its refusal, another for the other name, neither an account's name.
        var typedActor = Assert.Single(throttled.Distinct());
        Assert.StartsWith("unknown-account:", typedActor);
        Assert.Equal(SignInThrottle.MaxFailures, failed.Count(a => a == typedActor));
        var otherActor = Assert.Single(failed, a => a != typedActor && a.StartsWith("unknown-account:", StringComparison.Ordinal));
        Assert.NotEqual(typedActor, otherActor);
        Assert.Contains(typedActor, logs);
    }

    [Fact]
    public async Task A_failed_sign_in_to_an_account_is_recorded_under_its_name()
    {
        var name = "known-" + Guid.NewGuid().ToString("N")[..6];
        await app.CreateAccountAsync(name, Roles.Auditor, Password);
        await ConsoleSignIn.PostAsync(app.BaseUrl, "  " + name.ToUpperInvariant(), "wrong password 1");
        Assert.True(await ConsoleSignIn.SucceedsAsync(app.BaseUrl, name, Password));

        Assert.Contains(name, await ActorsAsync(SignInThrottle.FailedAction));
        Assert.Contains(name, await ActorsAsync(SignInThrottle.SucceededAction));
        Assert.Contains(app.Lines, l => l.Contains("Failed console sign-in", StringComparison.Ordinal) && l.Contains(name, StringComparison.Ordinal));
    }

    private async Task<List<string>> ActorsAsync(string action) =>
        (await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/audit?action={action}&pageSize=500", Http.Json)).EnumerateArray()
            .Select(e => e.GetProperty("actor").GetString()!).ToList();
}
