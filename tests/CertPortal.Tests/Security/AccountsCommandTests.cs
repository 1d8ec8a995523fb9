using System.Net;
using System.Text.RegularExpressions;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Security;

/// <summary><c>CertPortal accounts ...</c> run as a program on the service's data directory, the way an operator
/// creates the first administrator on the server.</summary>
public sealed class AccountsCommandTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    private Tool.Result Run(string? stdin, params string[] args) =>
        Tool.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "CertPortal.dll"), .. args,
                $"--CertPortal:DataDirectory={app.DataDirectory}", "--CertPortal:Ca:KeyPassphrase=test-ca-passphrase-0123",
                "--Logging:LogLevel:Default=Warning"],
            stdin: stdin, workingDirectory: app.DataDirectory, timeoutSeconds: 120);

    [Fact]
    public async Task Accounts_add_creates_an_administrator_who_can_sign_in_and_use_the_printed_api_key()
    {
        var name = "cli-admin-" + Guid.NewGuid().ToString("N")[..6];
        const string password = "typed on the server 42";
        var added = Run(password + "\n", "accounts", "add", "--name", name, "--role", "administrator").EnsureSuccess();
        Assert.DoesNotContain(password, added.Stdout + added.Stderr);
        var apiKey = Regex.Match(added.Stdout, @"cpk_[A-Za-z0-9_-]+").Value;
        Assert.NotEmpty(apiKey);

        // The running service sees the account: password sign-in and the API key both work.
        Assert.True(await ConsoleSignIn.SucceedsAsync(app.BaseUrl, name, password));
        using var http = new HttpClient { BaseAddress = new Uri(app.BaseUrl) };
        http.DefaultRequestHeaders.Authorization = new("Bearer", apiKey);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/api/v1/accounts")).StatusCode);

        var list = Run(null, "accounts", "list").EnsureSuccess();
        Assert.Contains(name, list.Stdout);
        Assert.DoesNotContain(apiKey, list.Stdout);
    }

    [Fact]
    public void Bad_input_is_refused_with_a_message_and_creates_nothing()
    {
        var name = "cli-bad-" + Guid.NewGuid().ToString("N")[..6];
        var weak = Run("short\n", "accounts", "add", "--name", name, "--role", "administrator");
        Assert.Equal(1, weak.ExitCode);
        Assert.Contains("password", weak.Stderr, StringComparison.OrdinalIgnoreCase);
        var role = Run("a long enough password\n", "accounts", "add", "--name", name, "--role", "superuser");
        Assert.Equal(1, role.ExitCode);
        Assert.Contains("role must be one of", role.Stderr);
        Assert.Equal(2, Run("", "accounts", "add", "--name", name, "--role", "administrator").ExitCode);
        Assert.Equal(2, Run(null, "accounts", "add", "--role", "administrator").ExitCode);
        Assert.Equal(2, Run(null, "accounts", "rename").ExitCode);
        Assert.DoesNotContain(name, Run(null, "accounts", "list").EnsureSuccess().Stdout);
    }
}
