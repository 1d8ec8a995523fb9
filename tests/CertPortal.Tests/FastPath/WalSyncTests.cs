using System.Net;
using System.Net.Http.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace CertPortal.Tests.FastPath;

/// <summary>Pipelined durability on SQLite: the group writer commits without syncing and answers only after a WAL sync that
/// started after its commit. Shown on the real service and its SQLite file by holding the sync thread: the rows are
/// committed (another connection reads them) while no answer has left, and the answers come once the sync ran.</summary>
public sealed class WalSyncTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Fact]
    public async Task Enrollment_and_revocation_are_answered_only_after_the_sync_that_covers_their_commit()
    {
        var writer = app.Service<GroupCommitWriter>();
        var token = await app.CreateTokenAsync("walsync@example.test", "signing");
        var csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem("walsync@example.test");
        var sync = writer.WalSync ?? throw new Xunit.Sdk.XunitException("the writer on a SQLite file has no WAL sync");

        using var gate = new ManualResetEventSlim(false);
        sync.BeforeSync = () => gate.Wait(TimeSpan.FromSeconds(60));
        Task<HttpResponseMessage> enrolled, collected;
        string serial;
        try
        {
            enrolled = app.PostEnrollmentAsync(token.Token, csr);
            serial = await CommittedCertificateAsync(token.Id);
            // Committed and visible to every connection, but not yet durable: no answer.
            await Task.Delay(300);
            Assert.False(enrolled.IsCompleted, "the enrollment was answered before the WAL sync covering its commit");
            // The same request again reads the spent token and the certificate outside the writer: it collects it, but not
            // before the record is durable either.
            collected = app.PostEnrollmentAsync(token.Token, csr);
            await Task.Delay(300);
            Assert.False(collected.IsCompleted, "a repeated enrollment collected a certificate whose record was not yet durable");
        }
        finally
        {
            gate.Set();
        }
        var first = await enrolled;
        await Http.EnsureStatus(first, HttpStatusCode.Created);
        Assert.Equal(serial, (await first.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!.SerialNumber);
        var second = await collected;
        await Http.EnsureStatus(second, HttpStatusCode.OK);
        Assert.Equal(serial, (await second.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!.SerialNumber);

        gate.Reset();
        Task<HttpResponseMessage> revoked;
        try
        {
            revoked = app.RevokeAsync(serial, "keyCompromise");
            await WaitForAsync(async db => await db.Certificates.AnyAsync(c => c.SerialNumber == serial && c.RevokedAt != null));
            await Task.Delay(300);
            Assert.False(revoked.IsCompleted, "the revocation was answered before the WAL sync covering its commit");
        }
        finally
        {
            gate.Set();
            sync.BeforeSync = null;
        }
        await Http.EnsureStatus(await revoked, HttpStatusCode.OK);
        Assert.Equal("revoked", (await app.GetCertificateAsync(serial)).Status);
    }

    [Fact]
    public async Task Units_arriving_during_a_sync_wait_in_one_open_transaction_and_commit_together_when_it_ends()
    {
        var writer = app.Service<GroupCommitWriter>();
        // The writer finds its database (and starts the sync) with its first group.
        await writer.WriteAsync((db, _) => Task.FromResult(0));
        var sync = writer.WalSync ?? throw new Xunit.Sdk.XunitException("the writer on a SQLite file has no WAL sync");
        using var gate = new ManualResetEventSlim(false);
        using var holding = new ManualResetEventSlim(false);
        sync.BeforeSync = () =>
        {
            holding.Set();
            gate.Wait(TimeSpan.FromSeconds(60));
        };
        var (syncsBefore, commitsBefore) = (writer.Syncs, writer.Commits);
        var run = Guid.NewGuid().ToString("N")[..8];
        List<Task<int>> later;
        Task<int> first;
        try
        {
            first = writer.WriteAsync((db, _) => Task.FromResult(0));
            Assert.True(holding.Wait(TimeSpan.FromSeconds(30)), "no sync started");
            // While the sync is held, the writer applies what arrives (20 token rows) into its next transaction but commits
            // nothing: one commit per sync.
            later = [];
            for (var i = 1; i <= 20; i++)
            {
                var value = i;
                later.Add(writer.WriteAsync(async (db, ct) =>
                {
                    await DirectSql.InsertTokenAsync(db, Token($"pipelined{value}.{run}@example.test"), ct);
                    return value;
                }));
                await Task.Delay(5);
            }
            for (var wait = System.Diagnostics.Stopwatch.StartNew(); writer.Applied < 20 && wait.Elapsed < TimeSpan.FromSeconds(30);)
                await Task.Delay(10);
            Assert.Equal(20, writer.Applied);
            Assert.Equal(commitsBefore + 1, writer.Commits);
            Assert.False(first.IsCompleted || later.Any(t => t.IsCompleted), "a write completed before its sync");
            // Applied, not committed: another connection does not see the rows yet.
            Assert.Equal(0, await StoredAsync(run));
        }
        finally
        {
            sync.BeforeSync = null;
            gate.Set();
        }
        await first;
        for (var i = 0; i < later.Count; i++) Assert.Equal(i + 1, await later[i]);
        Assert.Equal(20, await StoredAsync(run));
        // The held sync's commit, then one commit (and one sync) for all twenty.
        Assert.Equal(commitsBefore + 2, writer.Commits);
        Assert.Equal(syncsBefore + 2, writer.Syncs);
    }

    [Fact]
    public async Task A_failing_unit_applied_during_a_sync_fails_alone_and_the_others_commit_after_it()
    {
        var writer = app.Service<GroupCommitWriter>();
        await writer.WriteAsync((db, _) => Task.FromResult(0));
        var sync = writer.WalSync ?? throw new Xunit.Sdk.XunitException("the writer on a SQLite file has no WAL sync");
        var run = Guid.NewGuid().ToString("N")[..8];
        var existing = Token($"existing.{run}@example.test");
        await writer.WriteAsync(async (db, ct) =>
        {
            await DirectSql.InsertTokenAsync(db, existing, ct);
            return 0;
        });
        using var gate = new ManualResetEventSlim(false);
        using var holding = new ManualResetEventSlim(false);
        sync.BeforeSync = () =>
        {
            holding.Set();
            gate.Wait(TimeSpan.FromSeconds(60));
        };
        var writes = new List<Task<int>>();
        try
        {
            writes.Add(writer.WriteAsync((db, _) => Task.FromResult(0)));
            Assert.True(holding.Wait(TimeSpan.FromSeconds(30)), "no sync started");
            for (var i = 1; i <= 10; i++)
            {
                var value = i;
                // Unit 5 breaks a constraint in the open transaction: its token's id exists already.
                var token = Token($"f{value}.fail{run}@example.test", value == 5 ? existing.Id : null);
                writes.Add(writer.WriteAsync(async (db, ct) =>
                {
                    await DirectSql.InsertTokenAsync(db, token, ct);
                    return value;
                }));
                await Task.Delay(5);
            }
            await Task.Delay(200);
            Assert.False(writes.Any(t => t.IsCompleted), "a write completed before the held sync");
        }
        finally
        {
            sync.BeforeSync = null;
            gate.Set();
        }
        await Assert.ThrowsAnyAsync<SqliteException>(() => writes[5]);
        for (var i = 0; i < writes.Count; i++)
            if (i != 5) Assert.Equal(i, await writes[i]);
        Assert.Equal(9, await StoredAsync($"fail{run}"));
    }

    private static EnrollmentToken Token(string email, Guid? id = null) => new()
    {
        Id = id ?? Guid.NewGuid(), TokenHash = Guid.NewGuid().ToByteArray(), Email = email,
        CreatedAt = DateTimeOffset.UtcNow, CreatedBy = "test", ExpiresAt = DateTimeOffset.UtcNow.AddHours(1),
    };

    /// <summary>Token rows whose mailbox contains <paramref name="marker"/>, as another connection sees them.</summary>
    private async Task<int> StoredAsync(string marker)
    {
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        return await db.EnrollmentTokens.CountAsync(t => t.Email.Contains(marker));
    }

    [Fact]
    public async Task A_replaced_wal_file_is_opened_again_before_the_next_sync()
    {
        var directory = TempDir.Create("walsync");
        try
        {
            var file = Path.Combine(directory, "test.db");
            // No pool: closing the connection closes the database, as the last connection of a service does.
            var connectionString = $"Data Source={file};Pooling=False";
            SqliteWalSync sync;
            await using (var first = await OpenAsync(connectionString))
            {
                sync = await SqliteWalSync.ForAsync(first, NullLogger.Instance, () => { }) ?? throw new Xunit.Sdk.XunitException("no WAL sync");
                await WriteAndSyncAsync(first, sync);
            }
            // The last connection closed: SQLite checkpointed the WAL into the database file and deleted it. The descriptor
            // kept for syncing now names a deleted inode.
            Assert.False(File.Exists(file + "-wal"));
            Assert.Contains(file + "-wal (deleted)", OpenFiles());
            await using (var second = await OpenAsync(connectionString))
            {
                // A new -wal: the next sync must be of that file, not of the deleted one.
                await WriteAndSyncAsync(second, sync);
                Assert.True(File.Exists(file + "-wal"));
                Assert.DoesNotContain(file + "-wal (deleted)", OpenFiles());
            }
            Assert.Equal(2, sync.Syncs);
            await sync.StopAsync();
            sync.Dispose();
        }
        finally
        {
            TempDir.Delete(directory);
        }
    }

    private static async Task<SqliteConnection> OpenAsync(string connectionString)
    {
        var connection = new SqliteConnection(connectionString);
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t (x INTEGER);";
        await command.ExecuteNonQueryAsync();
        return connection;
    }

    private static async Task WriteAndSyncAsync(SqliteConnection connection, SqliteWalSync sync)
    {
        await SqliteWalSync.CommitWithoutSyncAsync(connection);
        var commit = sync.BeginCommit();
        await using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO t VALUES (1)";
        await command.ExecuteNonQueryAsync();
        var synced = new TaskCompletionSource<Exception?>(TaskCreationOptions.RunContinuationsAsynchronously);
        sync.CommitReturned(commit, failure => synced.SetResult(failure));
        Assert.Null(await synced.Task.WaitAsync(TimeSpan.FromSeconds(30)));
    }

    private static List<string> OpenFiles() =>
        new DirectoryInfo("/proc/self/fd").EnumerateFileSystemInfos().Select(f => f.LinkTarget).OfType<string>().ToList();

    private async Task<string> CommittedCertificateAsync(Guid tokenId)
    {
        string? serial = null;
        await WaitForAsync(async db => (serial = await db.Certificates.Where(c => c.TokenId == tokenId).Select(c => c.SerialNumber).FirstOrDefaultAsync()) is not null);
        return serial!;
    }

    private async Task WaitForAsync(Func<CertPortalDbContext, Task<bool>> condition)
    {
        for (var wait = System.Diagnostics.Stopwatch.StartNew(); ; await Task.Delay(20))
        {
            await using var scope = app.Services.CreateAsyncScope();
            if (await condition(scope.ServiceProvider.GetRequiredService<CertPortalDbContext>())) return;
            if (wait.Elapsed > TimeSpan.FromSeconds(30)) throw new TimeoutException("the write was not committed within 30 s");
        }
    }
}
