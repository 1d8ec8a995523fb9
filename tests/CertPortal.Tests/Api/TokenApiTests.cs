using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace CertPortal.Tests.Api;

public sealed class ClockedApp : CertPortalApp
{
    public ClockedApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow);

    /// <summary>Its tests place holds: multipurpose certificates, since the BR forbid holds for strict ones.</summary>
    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Issuance:PolicyOids:0"] = CertPortal.Authority.Oids.PolicyMailboxValidatedMultipurpose,
    };
}

public class TokenApiTests(ClockedApp app) : IClassFixture<ClockedApp>
{
    [Fact]
    public async Task Created_token_is_shown_once_with_256_random_bits_and_stored_only_as_a_hash()
    {
        var token = await app.CreateTokenAsync("hash.me@example.test", "signing", "Hash Me");
        Assert.StartsWith("cpt_", token.Token);
        Assert.True(Convert.FromBase64String(Base64UrlToBase64(token.Token[4..])).Length >= 16);
        Assert.Equal("hash.me@example.test", token.Email);
        Assert.Equal("signing", token.Profile);

        // The list never shows the secret...
        var list = await app.Admin.GetStringAsync("/api/v1/tokens?email=hash.me@example.test");
        Assert.DoesNotContain(token.Token, list);
        Assert.Contains("\"status\":\"pending\"", list);
        // ...and neither does the database file (SQLite WAL included).
        await using (var scope = app.Services.CreateAsyncScope())
            await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().Database.ExecuteSqlRawAsync("PRAGMA wal_checkpoint(FULL);");
        foreach (var file in Directory.GetFiles(app.DataDirectory, "certportal.db*"))
            Assert.DoesNotContain(token.Token, Encoding.UTF8.GetString(File.ReadAllBytes(file)));
    }

    [Fact]
    public async Task Admin_calls_without_or_with_a_wrong_key_get_401_problem()
    {
        var anonymous = await app.Client.PostAsJsonAsync("/api/v1/tokens", new { email = "x@example.test", profile = "signing" });
        await Http.AssertProblem(anonymous, HttpStatusCode.Unauthorized);
        Assert.Contains("Bearer", anonymous.Headers.WwwAuthenticate.ToString());

        using var wrong = new HttpClient { BaseAddress = new Uri(app.BaseUrl) };
        wrong.DefaultRequestHeaders.Authorization = new("Bearer", "not-the-key-not-the-key-not");
        await Http.AssertProblem(await wrong.GetAsync("/api/v1/tokens"), HttpStatusCode.Unauthorized);
        await Http.AssertProblem(await app.Client.DeleteAsync($"/api/v1/tokens/{Guid.NewGuid()}"), HttpStatusCode.Unauthorized);
    }

    [Theory]
    [InlineData("{\"email\":\"not-an-address\",\"profile\":\"signing\"}", "email")]
    [InlineData("{\"email\":\"a@b@example.test\",\"profile\":\"signing\"}", "mailbox")]
    [InlineData("{\"email\":\"Bob <bob@example.test>\",\"profile\":\"signing\"}", "mailbox")]
    [InlineData("{\"email\":\"ok@example.test\",\"profile\":\"authentication\"}", "profile")]
    [InlineData("{\"email\":\"ok@example.test\",\"profile\":\"signing\",\"validHours\":0}", "validHours")]
    [InlineData("{\"email\":\"ok@example.test\",\"profile\":\"signing\",\"validHours\":100000}", "validHours")]
    [InlineData("{\"email\":\"ok@example.test\",\"profile\":\"signing\",\"displayName\":\"a\\u0000b\"}", "displayName")]
    public async Task Invalid_token_requests_get_422_and_create_nothing(string body, string mentioned)
    {
        var before = await CountTokensAsync();
        var r = await app.Admin.PostAsync("/api/v1/tokens", new StringContent(body, Encoding.UTF8, "application/json"));
        var problem = await Http.AssertProblem(r, HttpStatusCode.UnprocessableEntity);
        Assert.Contains(mentioned, problem.GetProperty("detail").GetString() + problem.GetProperty("title").GetString(), StringComparison.OrdinalIgnoreCase);
        Assert.Equal(before, await CountTokensAsync());
    }

    [Fact]
    public async Task Token_lifecycle_pending_used_expired_revoked_is_listed()
    {
        var used = await app.CreateTokenAsync("life.used@example.test", "signing");
        await app.EnrollAsync(used.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem("life.used@example.test"));
        var revoked = await app.CreateTokenAsync("life.revoked@example.test", "signing");
        var revokeResponse = await app.Admin.DeleteAsync($"/api/v1/tokens/{revoked.Id}");
        await Http.EnsureStatus(revokeResponse, HttpStatusCode.OK);
        await Http.EnsureStatus(await app.Admin.DeleteAsync($"/api/v1/tokens/{revoked.Id}"), HttpStatusCode.OK); // twice: harmless
        var pending = await app.CreateTokenAsync("life.pending@example.test", "signing", validHours: 48);
        var expiring = await app.CreateTokenAsync("life.expired@example.test", "signing", validHours: 1);
        app.Clock!.Advance(TimeSpan.FromHours(2));

        async Task<string> StatusOf(Guid id)
        {
            var all = await app.Admin.GetFromJsonAsync<JsonElement[]>("/api/v1/tokens", Http.Json);
            return all!.Single(t => t.GetProperty("id").GetGuid() == id).GetProperty("status").GetString()!;
        }
        Assert.Equal("used", await StatusOf(used.Id));
        Assert.Equal("revoked", await StatusOf(revoked.Id));
        Assert.Equal("pending", await StatusOf(pending.Id));
        Assert.Equal("expired", await StatusOf(expiring.Id));

        var filtered = await app.Admin.GetFromJsonAsync<JsonElement[]>("/api/v1/tokens?status=expired", Http.Json);
        Assert.All(filtered!, t => Assert.Equal("expired", t.GetProperty("status").GetString()));

        // Expired and revoked tokens cannot enrol.
        var csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem("life.expired@example.test");
        var expiredProblem = await Http.AssertProblem(await app.PostEnrollmentAsync(expiring.Token, csr), HttpStatusCode.Forbidden);
        Assert.Contains("expired", expiredProblem.GetProperty("detail").GetString());
        var revokedProblem = await Http.AssertProblem(await app.PostEnrollmentAsync(revoked.Token,
            SubscriberKeyPair.Generate("EC-P256").CreateCsrPem("life.revoked@example.test")), HttpStatusCode.Forbidden);
        Assert.Contains("revoked", revokedProblem.GetProperty("detail").GetString());

        // A used token cannot be revoked (the certificate is what to revoke); an unknown one is 404.
        await Http.AssertProblem(await app.Admin.DeleteAsync($"/api/v1/tokens/{used.Id}"), HttpStatusCode.Conflict);
        await Http.AssertProblem(await app.Admin.DeleteAsync($"/api/v1/tokens/{Guid.NewGuid()}"), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Token_creation_and_revocation_are_audited_without_the_secret()
    {
        var token = await app.CreateTokenAsync("audit.me@example.test", "encryption");
        await app.Admin.DeleteAsync($"/api/v1/tokens/{token.Id}");
        var audit = await app.Admin.GetStringAsync($"/api/v1/audit?target=token:{token.Id}");
        Assert.Contains("token.created", audit);
        Assert.Contains("token.revoked", audit);
        Assert.Contains("admin-api-key", audit);
        Assert.DoesNotContain(token.Token, audit);
    }

    private async Task<int> CountTokensAsync()
    {
        await using var scope = app.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().EnrollmentTokens.CountAsync();
    }

    private static string Base64UrlToBase64(string s) => s.Replace('-', '+').Replace('_', '/').PadRight(s.Length + (4 - s.Length % 4) % 4, '=');
}
