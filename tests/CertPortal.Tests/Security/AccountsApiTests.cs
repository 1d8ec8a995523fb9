using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Security;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Security;

public sealed class AccountsApiTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Fact]
    public async Task Account_api_key_authenticates_with_the_accounts_role_only()
    {
        var (_, auditor) = await app.CreateAccountAsync("auditor-" + Guid.NewGuid().ToString("N")[..8], Roles.Auditor);

        // Auditors read the audit log and token list...
        Assert.Equal(HttpStatusCode.OK, (await auditor.GetAsync("/api/v1/audit")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await auditor.GetAsync("/api/v1/tokens")).StatusCode);
        // ...but may not change anything.
        var r = await auditor.PostAsJsonAsync("/api/v1/tokens", new { email = "x@example.test", profile = "dual" });
        await Http.AssertProblem(r, HttpStatusCode.Forbidden);
        await Http.AssertProblem(await auditor.GetAsync("/api/v1/accounts"), HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task Api_key_is_shown_once_and_stored_only_as_hash()
    {
        var name = "admin-" + Guid.NewGuid().ToString("N")[..8];
        var r = await app.Admin.PostAsJsonAsync("/api/v1/accounts", new { name, role = "administrator", password = "correct horse battery" });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        var body = await r.Content.ReadFromJsonAsync<JsonElement>();
        var apiKey = body.GetProperty("apiKey").GetString()!;
        Assert.StartsWith("cpk_", apiKey);

        var list = await app.Admin.GetStringAsync("/api/v1/accounts");
        Assert.Contains(name, list);
        Assert.DoesNotContain(apiKey, list);

        using var scope = app.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var stored = await db.Accounts.SingleAsync(a => a.Name == name);
        Assert.Equal(Accounts.HashApiKey(apiKey), stored.ApiKeyHash);
        Assert.DoesNotContain("correct horse", stored.PasswordHash);
        Assert.True(PasswordHashing.Verify("correct horse battery", stored.PasswordHash));
        Assert.False(PasswordHashing.Verify("correct horse batterY", stored.PasswordHash));
    }

    [Fact]
    public async Task Disabled_account_key_stops_working()
    {
        // Another administrator, so that this one is not the last (which may be neither disabled nor demoted).
        await app.CreateAccountAsync("keeper-" + Guid.NewGuid().ToString("N")[..8], Roles.Administrator);
        var (id, client) = await app.CreateAccountAsync("temp-" + Guid.NewGuid().ToString("N")[..8], Roles.Administrator);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/v1/accounts")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await app.Admin.DeleteAsync($"/api/v1/accounts/{id}")).StatusCode);
        await Http.AssertProblem(await client.GetAsync("/api/v1/accounts"), HttpStatusCode.Unauthorized);
        var audit = await app.Admin.GetStringAsync($"/api/v1/audit?target=account:{id}");
        Assert.Contains("account.disabled", audit);
        Assert.Contains("account.created", audit);
    }

    [Fact]
    public async Task Role_change_applies_to_the_account_key_at_its_next_request()
    {
        // Another administrator, so that this one is not the last (which may be neither disabled nor demoted).
        await app.CreateAccountAsync("keeper-" + Guid.NewGuid().ToString("N")[..8], Roles.Administrator);
        var (id, client) = await app.CreateAccountAsync("demoted-" + Guid.NewGuid().ToString("N")[..8], Roles.Administrator);
        // The key has been used (and its account remembered) before the change.
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/v1/accounts")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await app.Admin.PutAsJsonAsync($"/api/v1/accounts/{id}/role", new { role = Roles.Auditor })).StatusCode);
        await Http.AssertProblem(await client.GetAsync("/api/v1/accounts"), HttpStatusCode.Forbidden);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/v1/audit")).StatusCode);
    }

    [Fact]
    public async Task Account_disabled_outside_this_node_loses_its_key_within_the_cache_time()
    {
        var (id, client) = await app.CreateAccountAsync("elsewhere-" + Guid.NewGuid().ToString("N")[..8], Roles.Administrator);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/v1/accounts")).StatusCode);
        // As another node (or the accounts command) would: straight into the shared database, nothing evicted here.
        using (var scope = app.Services.CreateScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            var account = await db.Accounts.SingleAsync(a => a.Id == id);
            account.DisabledAt = DateTimeOffset.UtcNow;
            await db.SaveChangesAsync();
        }
        var changed = System.Diagnostics.Stopwatch.StartNew();
        HttpStatusCode status;
        while ((status = (await client.GetAsync("/api/v1/accounts")).StatusCode) == HttpStatusCode.OK && changed.Elapsed < TimeSpan.FromSeconds(30))
            await Task.Delay(200);
        Assert.Equal(HttpStatusCode.Unauthorized, status);
        Assert.True(changed.Elapsed < ApiKeyAccounts.CacheFor + TimeSpan.FromSeconds(2), $"the disabled key worked for {changed.Elapsed}");
    }

    [Theory]
    [InlineData("""{"name":"","role":"administrator"}""", "name")]
    [InlineData("""{"name":"Bad Name!","role":"administrator"}""", "name")]
    [InlineData("""{"name":"ok-name","role":"root"}""", "role")]
    [InlineData("""{"name":"ok-name","role":"auditor","password":"short"}""", "password")]
    public async Task Bad_account_requests_are_422_and_create_nothing(string json, string field)
    {
        var before = await app.Admin.GetStringAsync("/api/v1/accounts");
        var r = await app.Admin.PostAsync("/api/v1/accounts", new StringContent(json, System.Text.Encoding.UTF8, "application/json"));
        var problem = await Http.AssertProblem(r, HttpStatusCode.UnprocessableEntity);
        Assert.Contains(field, problem.GetProperty("detail").GetString());
        Assert.Equal(before, await app.Admin.GetStringAsync("/api/v1/accounts"));
    }

    [Fact]
    public async Task Duplicate_name_is_a_conflict()
    {
        var name = "dup-" + Guid.NewGuid().ToString("N")[..8];
        await app.CreateAccountAsync(name, Roles.Auditor);
        var r = await app.Admin.PostAsJsonAsync("/api/v1/accounts", new { name, role = "auditor" });
        await Http.AssertProblem(r, HttpStatusCode.Conflict);
    }

    [Theory]
    [InlineData("admin-api-key")]
    [InlineData("Setup")]
    [InlineData("anonymous")]
    [InlineData("enrollee")]
    public async Task Names_the_audit_log_uses_for_the_service_itself_are_refused(string name)
    {
        // An account named admin-api-key would be indistinguishable in the audit log from the admin API key.
        var r = await app.Admin.PostAsJsonAsync("/api/v1/accounts", new { name, role = "administrator", password = "reserved-name-password-1" });
        await Http.AssertProblem(r, HttpStatusCode.UnprocessableEntity);
        Assert.DoesNotContain(await app.Admin.GetFromJsonAsync<List<System.Text.Json.JsonElement>>("/api/v1/accounts") ?? [],
            a => string.Equals(a.GetProperty("name").GetString(), name, StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public async Task Unknown_account_key_is_401()
    {
        using var c = new HttpClient { BaseAddress = new Uri(app.BaseUrl) };
        c.DefaultRequestHeaders.Authorization = new("Bearer", "cpk_" + new string('A', 43));
        await Http.AssertProblem(await c.GetAsync("/api/v1/audit"), HttpStatusCode.Unauthorized);
    }
}
