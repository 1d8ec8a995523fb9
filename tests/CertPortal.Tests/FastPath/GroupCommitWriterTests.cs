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

    /// <summary>On SQLite a caller that only answers after its write resumes on the writer's thread as soon as its group has committed,
    /// before the next group begins (GroupCommitWriter.Answers): here the next group holds the writer's thread until the test lets it
    /// go, so a caller resumed through the thread pool would resume on another thread while that group had begun. Other callers
    /// resume on the thread pool.</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task On_sqlite_a_caller_that_only_answers_resumes_on_the_writers_thread_before_the_next_group(bool resumeOnWriter)
    {
        var writer = app.Service<GroupCommitWriter>();
        await writer.WriteAsync((db, _) => Task.FromResult(AddToken(db, $"writer.answers.warm.{resumeOnWriter}@example.test")));
        using var gate = new ManualResetEventSlim();
        var writerThread = 0;
        var nextBegun = false;
        Task<int>? next = null;
        var first = writer.WriteAsync((db, _) =>
        {
            writerThread = Environment.CurrentManagedThreadId;
            // Queued while this group runs: it is the next group.
            next = writer.WriteAsync((db2, _) =>
            {
                Volatile.Write(ref nextBegun, true);
                gate.Wait(TimeSpan.FromSeconds(10), CancellationToken.None);
                return Task.FromResult(AddToken(db2, $"writer.answers.next.{resumeOnWriter}@example.test"));
            });
            return Task.FromResult(AddToken(db, $"writer.answers.first.{resumeOnWriter}@example.test"));
        }, resumeOnWriter);
        await first;
        var resumedOn = Environment.CurrentManagedThreadId;
        var begunBeforeResume = Volatile.Read(ref nextBegun);
        gate.Set();
        Assert.Equal(1, await next!);
        if (resumeOnWriter)
        {
            Assert.Equal(writerThread, resumedOn);
            Assert.False(begunBeforeResume, "the next group began before the caller of the committed one resumed");
        }
        else Assert.NotEqual(writerThread, resumedOn);
    }

    private static int AddToken(CertPortalDbContext db, string email)
    {
        db.EnrollmentTokens.Add(new EnrollmentToken
        {
            Id = Guid.NewGuid(), TokenHash = Guid.NewGuid().ToByteArray(), Email = email,
            CreatedAt = DateTimeOffset.UtcNow, CreatedBy = "test", ExpiresAt = DateTimeOffset.UtcNow.AddHours(1),
        });
        return 1;
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
