using System.Net;
using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.FastPath;

/// <summary>On SQLite the enrollment's token read runs on connections kept open for it (<see cref="SqliteReadConnections"/>).
/// A kept connection must still see every commit made since it was opened (a token created, spent or revoked after it),
/// and it must really be kept: reused from read to read, a failed one dropped, no more than the bound kept idle.</summary>
public sealed class TokenReadTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Fact]
    public async Task A_kept_connection_reads_what_was_committed_after_it_was_opened()
    {
        var readers = app.Service<SqliteReadConnections>();
        var first = await app.CreateTokenAsync($"read-{Guid.NewGuid():N}@example.test", "signing");
        Assert.NotNull((await FindAsync(first.Token)).Token);
        var kept = readers.Rent();
        readers.Return(kept, healthy: true);
        var (rented, opened) = (readers.Rented, readers.Opened);

        // A token created after the connection was opened, then spent by an enrollment, then another one revoked.
        var second = await app.CreateTokenAsync($"read-{Guid.NewGuid():N}@example.test", "signing");
        var found = await FindAsync(second.Token);
        Assert.Equal(second.Id, found.Token?.Id);
        Assert.Null(found.Token!.UsedAt);
        var csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(second.Email);
        await Http.EnsureStatus(await app.PostEnrollmentAsync(second.Token, csr), HttpStatusCode.Created);
        Assert.NotNull((await FindAsync(second.Token)).Token!.UsedAt);

        await Http.EnsureStatus(await app.Admin.DeleteAsync($"/api/v1/tokens/{first.Id}"), HttpStatusCode.OK);
        Assert.NotNull((await FindAsync(first.Token)).Token!.RevokedAt);

        // Those reads (three here, one in the enrollment) ran on the connection kept before: one read at a time needs no other.
        Assert.Equal(4, readers.Rented - rented);
        Assert.Equal(opened, readers.Opened);
        var again = readers.Rent();
        Assert.Same(kept, again);
        readers.Return(again, healthy: true);
    }

    [Fact]
    public void A_failed_connection_is_dropped_and_at_most_the_bound_are_kept()
    {
        var dir = TempDir.Create("sqlite-readers");
        try
        {
            using var readers = new SqliteReadConnections($"Data Source={Path.Combine(dir, "r.db")};Pooling=False");
            var failed = readers.Rent();
            readers.Return(failed, healthy: false);
            Assert.Equal(System.Data.ConnectionState.Closed, failed.State);
            Assert.NotSame(failed, readers.Rent());

            var many = Enumerable.Range(0, SqliteReadConnections.MaxIdle + 4).Select(_ => readers.Rent()).ToList();
            foreach (var c in many) readers.Return(c, healthy: true);
            Assert.Equal(SqliteReadConnections.MaxIdle, many.Count(c => c.State == System.Data.ConnectionState.Open));
            var reused = Enumerable.Range(0, SqliteReadConnections.MaxIdle).Select(_ => readers.Rent()).ToList();
            Assert.All(reused, c => Assert.Contains(c, many));
            foreach (var c in reused) c.Dispose();
        }
        finally
        {
            TempDir.Delete(dir);
        }
    }

    private async Task<(EnrollmentToken? Token, KeyGenerationPolicy? Stored)> FindAsync(string secret)
    {
        await using var scope = app.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<EnrollmentTokens>().FindWithKeyGenerationAsync(secret, CancellationToken.None);
    }
}
