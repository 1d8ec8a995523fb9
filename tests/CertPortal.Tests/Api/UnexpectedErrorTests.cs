using System.Net;
using CertPortal.Tests.Infrastructure;
using Microsoft.Data.Sqlite;

namespace CertPortal.Tests.Api;

/// <summary>A failure the client cannot cause (here: the database loses the certificates table under a running service)
/// still reaches an API client as problem+json, also on the endpoints that short-circuit the middleware after routing.</summary>
public class UnexpectedErrorTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Fact]
    public async Task A_failing_database_on_a_short_circuited_look_up_is_a_problem_500_not_an_empty_one()
    {
        var path = Path.Combine(app.DataDirectory, "certportal.db");
        await Rename(path, "Certificates", "CertificatesAway");
        try
        {
            // Not cached: the look-up has to ask the database, which now fails.
            var r = await app.Client.GetAsync("/api/v1/directory/nobody.cached@example.test/certificates");
            var problem = await Http.AssertProblem(r, HttpStatusCode.InternalServerError);
            Assert.DoesNotContain("CertificatesAway", problem.ToString()); // nothing about internals
        }
        finally
        {
            await Rename(path, "CertificatesAway", "Certificates");
        }
        // And the service answers again once the database is whole.
        Assert.Equal(HttpStatusCode.NotFound, (await app.Client.GetAsync("/api/v1/directory/nobody.cached@example.test/certificates")).StatusCode);
    }

    private static async Task Rename(string database, string from, string to)
    {
        await using var db = new SqliteConnection($"Data Source={database};Default Timeout=30;Pooling=False");
        await db.OpenAsync();
        await using var command = db.CreateCommand();
        command.CommandText = $"ALTER TABLE \"{from}\" RENAME TO \"{to}\";";
        await command.ExecuteNonQueryAsync();
    }
}
