using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Data;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Gal;

/// <summary>The publication queue as an operator reads it during a long outage: more rows than the list shows.</summary>
public sealed class PublicationQueueTests(DirectoryApp app) : IClassFixture<DirectoryApp>
{
    [Fact]
    public async Task Counts_are_of_every_open_row_not_of_the_rows_listed()
    {
        await app.WaitForDirectoryAsync();
        var now = DateTimeOffset.UtcNow;
        using (var scope = app.Service<IServiceScopeFactory>().CreateScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            // Failed once and waiting for their retry (not due, so the worker leaves them alone): as after an outage.
            db.DirectoryPublications.AddRange(Enumerable.Range(0, 600).Select(i => new DirectoryPublication
            {
                Kind = DirectoryPublicationKinds.Person, Key = $"queued.{i}@example.test", Reason = "issued", CreatedAt = now,
                NextAttemptAt = now.AddDays(1), Attempts = 1, LastError = "Cannot connect/bind",
            }));
            await db.SaveChangesAsync();
        }

        var queue = await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/directory/publications");
        Assert.Equal(600, queue.GetProperty("failing").GetInt32());
        Assert.Equal(0, queue.GetProperty("pending").GetInt32());
        Assert.Equal(500, queue.GetProperty("items").GetArrayLength());
    }
}
