using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Time.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace CertPortal.Tests.Infrastructure;

/// <summary>The real service on a real Kestrel port with a real SQLite file in a temporary data
/// directory, so CRL and AIA URLs in issued certificates can be fetched like a relying party would.</summary>
public class CertPortalApp : IAsyncLifetime
{
    public const string AdminKey = "test-admin-key-0123456789abcdef";
    private WebApplicationFactory<Program>? _factory;

    public string DataDirectory { get; } = TempDir.Create("certportal-app");
    /// <summary>Known before the service starts (subclasses build URLs with it); changed only if another
    /// process took it before the service bound it.</summary>
    public int Port { get; private set; } = FreePort.Next();
    public string BaseUrl => $"http://127.0.0.1:{Port}";
    public HttpClient Client { get; private set; } = null!;
    public HttpClient Admin { get; private set; } = null!;
    public IServiceProvider Services => _factory!.Services;

    /// <summary>When set, the service's TimeProvider: tests move time to expire tokens and certificates.</summary>
    public FakeTimeProvider? Clock { get; protected init; }

    /// <summary>Extra services for a test (e.g. a failing database interceptor).</summary>
    protected virtual void ConfigureServices(IServiceCollection services) { }

    /// <summary>Extra CertPortal settings (key: path below "CertPortal:").</summary>
    protected virtual IDictionary<string, string?> Settings => new Dictionary<string, string?>();

    public virtual Task InitializeAsync()
    {
        Start();
        return Task.CompletedTask;
    }

    /// <summary>Starts the service; a restart keeps its port, which issued certificates name in their URLs.</summary>
    public void Start()
    {
        if (_started)
        {
            StartOn(Port);
            return;
        }
        Port = FreePort.Start(Port, StartOn);
        _started = true;
    }

    private bool _started;

    private void StartOn(int port)
    {
        Port = port;
        var factory = new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
        {
            b.UseEnvironment("Production");
            b.UseSetting("urls", BaseUrl);
            b.UseSetting("CertPortal:DataDirectory", DataDirectory);
            b.UseSetting("CertPortal:PublicBaseUrl", BaseUrl);
            b.UseSetting("CertPortal:AdminApiKey", AdminKey);
            b.UseSetting("CertPortal:Ca:KeyPassphrase", "test-ca-passphrase-0123");
            // The CRL is signed before a revocation returns, so a test can revoke and fetch the CRL at once.
            b.UseSetting("CertPortal:Crl:PublishDelay", "00:00:00");
            // With a fake clock, FakeTimeProvider.Advance fires every due timer in turn: the CRL publisher's
            // 1 s check re-armed through a 366-day jump is tens of millions of wake-ups (the test hung).
            if (Clock is not null) b.UseSetting("CertPortal:Crl:CheckInterval", "01:00:00");
            foreach (var (k, v) in Settings) b.UseSetting("CertPortal:" + k, v);
            b.ConfigureLogging(l => l.SetMinimumLevel(LogLevel.Warning));
            b.ConfigureTestServices(services =>
            {
                if (Clock is not null) services.AddSingleton<TimeProvider>(Clock);
                ConfigureServices(services);
            });
        });
        factory.UseKestrel(Port);
        try
        {
            factory.StartServer();
        }
        catch
        {
            factory.Dispose();
            throw;
        }
        _factory = factory;
        Client = new HttpClient { BaseAddress = new Uri(BaseUrl), Timeout = TimeSpan.FromSeconds(60) };
        Admin = new HttpClient { BaseAddress = new Uri(BaseUrl), Timeout = TimeSpan.FromSeconds(60) };
        Admin.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", AdminKey);
    }

    /// <summary>Stops the host (as a crash or restart would) keeping the data directory.</summary>
    public async Task StopAsync()
    {
        Client.Dispose();
        Admin.Dispose();
        if (_factory is not null) await _factory.DisposeAsync();
        _factory = null;
    }

    public virtual async Task DisposeAsync()
    {
        await StopAsync();
        TempDir.Delete(DataDirectory);
    }

    public T Service<T>() where T : notnull => _factory!.Services.GetRequiredService<T>();

    public async Task<TokenResponse> CreateTokenAsync(string email, string profile = "dual", string displayName = "Test Person", int validHours = 24)
    {
        var r = await Admin.PostAsJsonAsync("/api/v1/tokens", new { email, displayName, profile, validHours });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        return (await r.Content.ReadFromJsonAsync<TokenResponse>(Http.Json))!;
    }

    public async Task<HttpResponseMessage> PostEnrollmentAsync(string token, string csr) =>
        await Client.PostAsJsonAsync("/api/v1/enrollments", new { token, csr });

    public async Task<EnrollmentResponse> EnrollAsync(string token, string csr)
    {
        var r = await PostEnrollmentAsync(token, csr);
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        return (await r.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!;
    }

    /// <summary>Token + key (made by openssl or .NET) + enrollment in one step.</summary>
    public async Task<(EnrollmentResponse Cert, SubscriberKeyPair Key)> IssueAsync(string email, string profile, string algorithm = "EC-P256")
    {
        var token = await CreateTokenAsync(email, profile);
        var key = SubscriberKeyPair.Generate(algorithm);
        var cert = await EnrollAsync(token.Token, key.CreateCsrPem(email));
        return (cert, key);
    }

    public async Task<HttpResponseMessage> RevokeAsync(string serial, string reason) =>
        await Admin.PostAsJsonAsync($"/api/v1/certificates/{serial}/revoke", new { reason });

    public async Task<CertificateResponse> GetCertificateAsync(string serial)
    {
        var r = await Client.GetAsync($"/api/v1/certificates/{serial}");
        await Http.EnsureStatus(r, HttpStatusCode.OK);
        return (await r.Content.ReadFromJsonAsync<CertificateResponse>(Http.Json))!;
    }

    /// <summary>Creates an account through the admin API; returns its id and a client that sends its API key.</summary>
    public async Task<(Guid Id, HttpClient Client)> CreateAccountAsync(string name, string role, string? password = null)
    {
        var r = await Admin.PostAsJsonAsync("/api/v1/accounts", new { name, displayName = name, role, password });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        var created = (await r.Content.ReadFromJsonAsync<JsonElement>(Http.Json))!;
        var client = new HttpClient { BaseAddress = new Uri(BaseUrl), Timeout = TimeSpan.FromSeconds(60) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", created.GetProperty("apiKey").GetString());
        return (created.GetProperty("id").GetGuid(), client);
    }

    /// <summary>Disables every enabled administrator account but <paramref name="keep"/> (at least one), through the admin API,
    /// so that a test knows which administrators its fixture has whatever other tests created.</summary>
    public async Task DisableAdministratorsExceptAsync(params Guid[] keep)
    {
        foreach (var a in (await Admin.GetFromJsonAsync<JsonElement>("/api/v1/accounts", Http.Json)).EnumerateArray())
        {
            var id = a.GetProperty("id").GetGuid();
            if (a.GetProperty("role").GetString() == "administrator" && a.GetProperty("disabledAt").ValueKind == JsonValueKind.Null && !keep.Contains(id))
                await Http.EnsureStatus(await Admin.DeleteAsync($"/api/v1/accounts/{id}"), HttpStatusCode.OK);
        }
    }

    /// <summary>The enabled administrator accounts, by id.</summary>
    public async Task<IReadOnlyList<Guid>> EnabledAdministratorsAsync() =>
        (await Admin.GetFromJsonAsync<JsonElement>("/api/v1/accounts", Http.Json)).EnumerateArray()
            .Where(a => a.GetProperty("role").GetString() == "administrator" && a.GetProperty("disabledAt").ValueKind == JsonValueKind.Null)
            .Select(a => a.GetProperty("id").GetGuid()).ToList();
}

public sealed record TokenResponse(Guid Id, string Token, string Email, string DisplayName, string Profile, DateTimeOffset ExpiresAt, string EnrollmentUrl);

public sealed record EnrollmentResponse(string SerialNumber, string CertificatePem, string ChainPem, DateTimeOffset NotBefore, DateTimeOffset NotAfter);

public sealed record CertificateResponse(string SerialNumber, string Email, string Profile, string Status, string? RevocationReason,
    DateTimeOffset? RevokedAt, string CertificatePem, string KeyAlgorithm);

public static class Http
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public static async Task EnsureStatus(HttpResponseMessage r, HttpStatusCode expected)
    {
        if (r.StatusCode != expected)
            throw new Xunit.Sdk.XunitException($"Expected {(int)expected} but got {(int)r.StatusCode}: {await r.Content.ReadAsStringAsync()}");
    }

    /// <summary>Asserts an RFC 7807 problem response with the given status, returning its detail.</summary>
    public static async Task<JsonElement> AssertProblem(HttpResponseMessage r, HttpStatusCode expected)
    {
        var body = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == expected, $"Expected {(int)expected} but got {(int)r.StatusCode}: {body}");
        Assert.Equal("application/problem+json", r.Content.Headers.ContentType?.MediaType);
        var doc = JsonDocument.Parse(body).RootElement;
        Assert.Equal((int)expected, doc.GetProperty("status").GetInt32());
        Assert.False(string.IsNullOrWhiteSpace(doc.GetProperty("title").GetString()));
        return doc;
    }
}

public static class TempDir
{
    public static string Create(string prefix)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    public static void Delete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { /* a child process may still hold a file; the OS temp cleaner gets it */ }
    }
}
