using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Security;

/// <summary>The service with no admin key configured and every log message captured down to Trace.</summary>
public sealed class LoggedApp : CertPortalApp
{
    public ConcurrentQueue<string> Lines { get; } = new();

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?> { ["AdminApiKey"] = "" };

    protected override void ConfigureServices(IServiceCollection services) => CapturingLoggerProvider.AddTo(services, Lines);
}

public sealed class SecretsInLogsTests(LoggedApp app) : IClassFixture<LoggedApp>
{
    [Fact]
    public async Task Generated_admin_key_is_written_0600_and_the_log_names_the_file_not_the_key()
    {
        var path = Path.Combine(app.DataDirectory, "admin-api-key");
        var key = File.ReadAllText(path).Trim();
        Assert.True(key.Length >= 32);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.Contains(app.Lines, l => l.Contains(path));

        // The generated key is the admin key.
        using var admin = new HttpClient { BaseAddress = new Uri(app.BaseUrl) };
        admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        Assert.Equal(HttpStatusCode.OK, (await admin.GetAsync("/api/v1/tokens")).StatusCode);

        // A full enrollment and a bad one, then no secret anywhere in the logs.
        var r = await admin.PostAsync("/api/v1/tokens", JsonBody("""{"email":"logs@example.test","profile":"dual"}"""));
        var token = System.Text.Json.JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("token").GetString()!;
        var keyPair = SubscriberKeyPair.Generate("EC-P256");
        var csr = keyPair.CreateCsrPem("logs@example.test");
        Assert.Equal(HttpStatusCode.Created, (await app.PostEnrollmentAsync(token, csr)).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await app.PostEnrollmentAsync(token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem("logs@example.test"))).StatusCode);
        const string caPassphrase = "test-ca-passphrase-0123"; // configured by CertPortalApp

        var all = string.Join('\n', app.Lines);
        Assert.True(app.Lines.Count > 10, "logging was captured");
        Assert.DoesNotContain(key, all);
        Assert.DoesNotContain(token, all);
        Assert.DoesNotContain(token["cpt_".Length..], all);
        Assert.DoesNotContain(caPassphrase, all);
        Assert.DoesNotContain("PRIVATE KEY", all);
    }

    private static StringContent JsonBody(string json) => new(json, System.Text.Encoding.UTF8, "application/json");
}
