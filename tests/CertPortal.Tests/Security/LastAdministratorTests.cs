using System.Net;
using System.Net.Http.Json;
using CertPortal.Security;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Security;

/// <summary>The last enabled administrator account stays: disabling or demoting it is a 409 that changes nothing. The admin
/// API key does not count as an administrator (it is not an account), so it cannot remove the last one either.</summary>
public sealed class LastAdministratorTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    private static string Unique(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..6]}";

    [Fact]
    public async Task The_last_enabled_administrator_can_be_neither_disabled_nor_demoted()
    {
        const string password = "last-admin-password-1";
        var name = Unique("last");
        var (id, own) = await app.CreateAccountAsync(name, Roles.Administrator, password);
        // Neither a disabled administrator nor an auditor counts.
        var (disabled, _) = await app.CreateAccountAsync(Unique("gone"), Roles.Administrator);
        await app.CreateAccountAsync(Unique("reader"), Roles.Auditor);
        await app.DisableAdministratorsExceptAsync(id);
        Assert.Equal([id], await app.EnabledAdministratorsAsync());

        // Neither through the admin API key nor by the account itself.
        foreach (var client in new[] { app.Admin, own })
        {
            var refused = await Http.AssertProblem(await client.DeleteAsync($"/api/v1/accounts/{id}"), HttpStatusCode.Conflict);
            Assert.Contains("last enabled administrator account cannot be disabled", refused.GetProperty("detail").GetString());
            foreach (var role in new[] { Roles.Auditor, Roles.RecoveryAgent })
            {
                refused = await Http.AssertProblem(await client.PutAsJsonAsync($"/api/v1/accounts/{id}/role", new { role }), HttpStatusCode.Conflict);
                Assert.Contains("last enabled administrator account cannot be demoted", refused.GetProperty("detail").GetString());
            }
        }

        // Nothing changed: it administers, signs in, and the audit log records no change.
        Assert.Equal(HttpStatusCode.OK, (await own.GetAsync("/api/v1/accounts")).StatusCode);
        Assert.True(await ConsoleSignIn.SucceedsAsync(app.BaseUrl, name, password));
        var audit = await app.Admin.GetStringAsync($"/api/v1/audit?target=account:{id}");
        Assert.DoesNotContain("account.disabled", audit);
        Assert.DoesNotContain("account.role-changed", audit);
        // Already an administrator: a change to nothing is not refused. Already disabled: neither.
        await Http.EnsureStatus(await app.Admin.PutAsJsonAsync($"/api/v1/accounts/{id}/role", new { role = Roles.Administrator }), HttpStatusCode.OK);
        await Http.EnsureStatus(await app.Admin.DeleteAsync($"/api/v1/accounts/{disabled}"), HttpStatusCode.OK);

        // With another administrator it may go, and the other is then the last.
        var (successor, _) = await app.CreateAccountAsync(Unique("successor"), Roles.Administrator);
        await Http.EnsureStatus(await own.PutAsJsonAsync($"/api/v1/accounts/{id}/role", new { role = Roles.Auditor }), HttpStatusCode.OK);
        await Http.AssertProblem(await app.Admin.DeleteAsync($"/api/v1/accounts/{successor}"), HttpStatusCode.Conflict);
        Assert.Equal([successor], await app.EnabledAdministratorsAsync());
    }
}
