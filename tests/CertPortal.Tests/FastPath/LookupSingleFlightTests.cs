using System.Data.Common;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Gal;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace CertPortal.Tests.FastPath;

/// <summary>Look-up misses for one mailbox at once share one database read, and a read that began before a change is
/// never shared with a look-up made after it. A second RecipientCache reads the running service's SQLite file through a
/// gate that holds its certificate reads until the test opens it. It learns of the service's changes as the node that
/// made a change does, at its commit (<see cref="CommittedHereAsync"/>): on SQLite, one node per database, there is no
/// change log to poll.</summary>
public sealed class LookupSingleFlightTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Fact]
    public async Task Concurrent_misses_share_one_read_but_never_one_that_began_before_a_change()
    {
        var email = $"single.flight.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (issued, _) = await app.IssueAsync(email, "encryption");

        var gate = new HeldCertificateReads();
        await using var services = new ServiceCollection()
            .AddDbContext<CertPortalDbContext, SqliteCertPortalDbContext>(o =>
                o.UseSqlite($"Data Source={Path.Combine(app.DataDirectory, "certportal.db")};Default Timeout=30").AddInterceptors(gate))
            .BuildServiceProvider();
        using var cache = new RecipientCache(services.GetRequiredService<IServiceScopeFactory>(), app.Service<CertPortalOptions>(), TimeProvider.System,
            NullLogger<RecipientCache>.Instance);
        await cache.StartAsync(CancellationToken.None);
        try
        {
            await Until(() => cache.Watching, "the cache follows the change log");

            // Twenty look-ups while the first read is held: one read answers them all.
            gate.Hold();
            var burst = Enumerable.Range(0, 20).Select(_ => cache.LookupAsync(email, CertificateUsage.Encryption, CancellationToken.None).AsTask()).ToList();
            await Until(() => gate.Waiting == 1, "the first read reached the database");
            Assert.Equal(1, cache.Loads);
            gate.Release();
            var answers = await Task.WhenAll(burst);
            Assert.Equal(1, cache.Loads);
            Assert.All(answers, a => Assert.Contains(issued.SerialNumber, System.Text.Encoding.UTF8.GetString(a!)));

            // A read that began before a change is not joined by a look-up made after it. A second certificate drops the
            // entry; look-up A's read is held; the first certificate is revoked; look-up B must read again.
            await Until(() => cache.Count == 1, "the answer is kept");
            var (second, _) = await app.IssueAsync(email, "encryption");
            await CommittedHereAsync(services, cache, email);
            await Until(() => cache.Count == 0, "the new certificate dropped the entry");
            gate.Hold();
            var a = cache.LookupAsync(email, CertificateUsage.Encryption, CancellationToken.None).AsTask();
            await Until(() => gate.Waiting == 1, "look-up A's read reached the database");
            Assert.Equal(2, cache.Loads);
            var loadsBefore = cache.Loads;
            var epoch = cache.Epoch;
            await Http.EnsureStatus(await app.RevokeAsync(issued.SerialNumber, "keyCompromise"), System.Net.HttpStatusCode.OK);
            await CommittedHereAsync(services, cache, email);
            await Until(() => cache.Epoch > epoch, "the revocation reached the cache");
            var b = cache.LookupAsync(email, CertificateUsage.Encryption, CancellationToken.None).AsTask();
            Assert.Equal(loadsBefore + 1, cache.Loads);
            gate.Release();
            await a;
            var answer = System.Text.Encoding.UTF8.GetString((await b)!);
            Assert.Contains(second.SerialNumber, answer);
            Assert.DoesNotContain(issued.SerialNumber, answer);
        }
        finally
        {
            gate.Release();
            await cache.StopAsync(CancellationToken.None);
        }
    }

    /// <summary>What a node's cache does when the node commits a change to <paramref name="email"/>'s certificates.</summary>
    private static async Task CommittedHereAsync(IServiceProvider services, RecipientCache cache, string email)
    {
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        cache.RecordChange(db, email, DateTimeOffset.UtcNow);
        cache.Committed(db);
    }

    private static Task Until(Func<bool> condition, string what) =>
        Eventually.TrueAsync(condition, () => $"timed out waiting until {what}", TimeSpan.FromSeconds(10));

    /// <summary>Holds every read of the certificates table (not the change log's) while closed.</summary>
    private sealed class HeldCertificateReads : DbCommandInterceptor
    {
        private volatile TaskCompletionSource _open = Opened();
        private int _waiting;

        public int Waiting => Volatile.Read(ref _waiting);
        public void Hold() => _open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        public void Release() => _open.TrySetResult();

        private static TaskCompletionSource Opened()
        {
            var open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            open.SetResult();
            return open;
        }

        public override async ValueTask<InterceptionResult<DbDataReader>> ReaderExecutingAsync(DbCommand command, CommandEventData eventData,
            InterceptionResult<DbDataReader> result, CancellationToken cancellationToken = default)
        {
            if (command.CommandText.Contains("FROM \"Certificates\"", StringComparison.Ordinal))
            {
                Interlocked.Increment(ref _waiting);
                try
                {
                    await _open.Task;
                }
                finally
                {
                    Interlocked.Decrement(ref _waiting);
                }
            }
            return result;
        }
    }
}
