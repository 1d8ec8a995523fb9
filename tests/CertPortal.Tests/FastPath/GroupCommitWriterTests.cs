using System.Net;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.FastPath;

/// <summary>The group writer on the real service and its SQLite file: concurrent writes share commits, a
/// failing unit fails alone, and what the writer confirmed is in the database.</summary>
public sealed class GroupCommitWriterTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Fact]
    public async Task Queued_writes_share_commits_and_a_failing_write_fails_only_itself()
    {
        var writer = app.Service<GroupCommitWriter>();
        var existing = await app.CreateTokenAsync("writer.existing@example.test", "signing");
        var commitsBefore = writer.Commits;
        var ids = Enumerable.Range(0, 200).Select(_ => Guid.NewGuid()).ToList();
        var tasks = ids.Select((id, i) => writer.WriteAsync((db, _) =>
        {
            // Unit 100 breaks a constraint: its id is a token that already exists.
            db.EnrollmentTokens.Add(new EnrollmentToken
            {
                Id = i == 100 ? existing.Id : id, TokenHash = Guid.NewGuid().ToByteArray(), Email = $"writer{i}@example.test",
                CreatedAt = DateTimeOffset.UtcNow, CreatedBy = "test", ExpiresAt = DateTimeOffset.UtcNow.AddHours(1),
            });
            return Task.FromResult(i);
        })).ToList();

        await Assert.ThrowsAnyAsync<DbUpdateException>(() => tasks[100]);
        for (var i = 0; i < tasks.Count; i++)
            if (i != 100) Assert.Equal(i, await tasks[i]);

        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var stored = await db.EnrollmentTokens.Where(t => t.Email.StartsWith("writer") && t.Email != "writer.existing@example.test").CountAsync();
        Assert.Equal(199, stored);
        // 200 writes queued at once took far fewer commits than writes, the failed group's retries in halves included.
        var commits = writer.Commits - commitsBefore;
        Assert.True(commits <= 40, $"{commits} commits for 199 writes");
    }

    [Fact]
    public async Task Concurrent_token_creations_and_enrollments_over_http_all_commit()
    {
        var tokens = await Task.WhenAll(Enumerable.Range(0, 40).Select(i => app.CreateTokenAsync($"burst{i}@example.test", "signing")));
        var enrolled = await Task.WhenAll(tokens.Select(t => app.EnrollAsync(t.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(t.Email))));
        Assert.Equal(40, enrolled.Select(e => e.SerialNumber).Distinct().Count());
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.Equal(40, await db.Certificates.CountAsync(c => c.Email.StartsWith("burst")));
        Assert.Equal(40, await db.AuditEvents.CountAsync(a => a.Action == "certificate.issued" && a.Details!.Contains("burst")));
        Assert.Equal(HttpStatusCode.OK, (await app.Client.GetAsync("/healthz")).StatusCode);
    }

    [Fact]
    public async Task Sqlite_commits_are_durable_with_synchronous_full_in_wal_mode()
    {
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var connection = db.Database.GetDbConnection();
        await db.Database.OpenConnectionAsync();
        try
        {
            await using var command = connection.CreateCommand();
            command.CommandText = "PRAGMA journal_mode";
            Assert.Equal("wal", (string?)await command.ExecuteScalarAsync());
            command.CommandText = "PRAGMA synchronous";
            Assert.Equal(2L, (long?)await command.ExecuteScalarAsync()); // 2 = FULL
        }
        finally
        {
            await db.Database.CloseConnectionAsync();
        }
    }
}
