using CertPortal.Security;
using Microsoft.Extensions.Caching.Memory;

namespace CertPortal.Tests.Security;

/// <summary>The account state a console session is checked against, cached for a few seconds: a read that overlapped a change
/// made on this node (disable, role change) must not be remembered, or the change would wait for the cache to expire.</summary>
public sealed class ConsoleSessionCacheTests
{
    [Fact]
    public async Task A_read_that_overlapped_a_disable_answers_but_is_not_remembered()
    {
        using var cache = new MemoryCache(new MemoryCacheOptions());
        var sessions = new ConsoleSessions(cache);
        var id = Guid.NewGuid();
        var enabled = new ConsoleSessions.AccountState(Roles.Administrator, Enabled: true, SessionEpoch: 0);
        var disabled = new ConsoleSessions.AccountState(Roles.Administrator, Enabled: false, SessionEpoch: 0);

        // A request reads "enabled"; before its read returns, the account is disabled on this node (which forgets it).
        var reading = new TaskCompletionSource();
        var release = new TaskCompletionSource<ConsoleSessions.AccountState?>();
        var overlapping = sessions.StateAsync(id, _ => { reading.SetResult(); return release.Task; }, CancellationToken.None);
        await reading.Task;
        sessions.Forget(id);
        release.SetResult(enabled);
        Assert.Equal(enabled, await overlapping);

        // The next request reads again and sees the disable.
        Assert.Equal(disabled, await sessions.StateAsync(id, _ => Task.FromResult<ConsoleSessions.AccountState?>(disabled), CancellationToken.None));
        // A read that overlapped nothing is remembered.
        Assert.Equal(disabled, await sessions.StateAsync(id, _ => throw new InvalidOperationException("read from the cache"), CancellationToken.None));
    }
}
