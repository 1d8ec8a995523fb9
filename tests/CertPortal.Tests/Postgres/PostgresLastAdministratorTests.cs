using System.Net;
using System.Net.Http.Json;
using CertPortal.Security;

namespace CertPortal.Tests.Postgres;

/// <summary>On PostgreSQL writers run at once (read committed), so "is another administrator left?" and the change must be
/// decided together: each request runs on its own connection, as requests reaching two nodes do.</summary>
public sealed class PostgresLastAdministratorTests(PostgresApp app) : IClassFixture<PostgresApp>
{
    [Fact]
    public async Task Two_administrators_disabling_or_demoting_each_other_at_once_leave_one_enabled()
    {
        for (var round = 0; round < 8; round++)
        {
            var (a, aKey) = await app.CreateAccountAsync($"pair{round}-a-{Guid.NewGuid().ToString("N")[..6]}", Roles.Administrator);
            var (b, bKey) = await app.CreateAccountAsync($"pair{round}-b-{Guid.NewGuid().ToString("N")[..6]}", Roles.Administrator);
            await app.DisableAdministratorsExceptAsync(a, b);
            // Connected and authenticated beforehand, so that both requests reach the change together.
            Assert.Equal(HttpStatusCode.OK, (await aKey.GetAsync("/api/v1/accounts")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await bKey.GetAsync("/api/v1/accounts")).StatusCode);

            var demote = round % 2 == 1;
            Task<HttpResponseMessage> Remove(HttpClient by, Guid other) => demote
                ? by.PutAsJsonAsync($"/api/v1/accounts/{other}/role", new { role = Roles.Auditor })
                : by.DeleteAsync($"/api/v1/accounts/{other}");
            var answers = await Task.WhenAll(Remove(aKey, b), Remove(bKey, a));

            var statuses = string.Join(", ", answers.Select(r => (int)r.StatusCode));
            Assert.True(answers.Count(r => r.StatusCode == HttpStatusCode.OK) == 1, $"round {round} ({(demote ? "demote" : "disable")}): {statuses}");
            // The other was refused as the last administrator (409), or, when the first change committed before it was
            // authenticated, for its own key: disabled (401) or demoted (403).
            Assert.All(answers.Where(r => r.StatusCode != HttpStatusCode.OK),
                r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.Conflict, HttpStatusCode.Unauthorized, HttpStatusCode.Forbidden }));
            Assert.Single(await app.EnabledAdministratorsAsync());
        }
    }
}
