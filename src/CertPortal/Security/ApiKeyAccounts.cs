using CertPortal.Data;
using Microsoft.Extensions.Caching.Memory;

namespace CertPortal.Security;

/// <summary>The accounts behind API keys, remembered for <see cref="CacheFor"/> after a database read: a script sends its
/// key with every request (a bulk revocation, thousands of token creations), and the account need not be read each time.
/// Disabling an account or changing its role forgets it on this node at once (<see cref="Forget"/>); other nodes, and the
/// <c>accounts</c> command, take effect within <see cref="CacheFor"/>, as console sessions do (<see cref="ConsoleSessions"/>).
/// Only keys that belong to an enabled account are remembered, so guessing keys cannot fill memory. Entries are keyed by
/// the key's SHA-256, as the database stores it: a memory dump shows no key.</summary>
public sealed class ApiKeyAccounts(IMemoryCache cache)
{
    public static readonly TimeSpan CacheFor = ConsoleSessions.CacheFor;

    // Bumped by every Forget: a read that overlapped one may predate the change, so it answers but is not remembered.
    private long _epoch;

    /// <param name="requestServices">Where <see cref="Accounts"/> comes from on a miss (a hit leases no database context).</param>
    public async Task<Account?> FindAsync(string apiKey, IServiceProvider requestServices, CancellationToken ct)
    {
        var hash = Accounts.HashApiKey(apiKey);
        var key = Key(hash);
        if (cache.TryGetValue(key, out Account? account)) return account;
        var epoch = Interlocked.Read(ref _epoch);
        account = await requestServices.GetRequiredService<Accounts>().FindByApiKeyHashAsync(hash, ct);
        // What a principal needs, not the password hash.
        if (account is not null && epoch == Interlocked.Read(ref _epoch))
            cache.Set(key, new Account { Id = account.Id, Name = account.Name, DisplayName = account.DisplayName, Role = account.Role }, CacheFor);
        return account;
    }

    /// <summary>After a change to the account has been saved.</summary>
    public void Forget(Account account)
    {
        Interlocked.Increment(ref _epoch);
        if (account.ApiKeyHash is { } hash) cache.Remove(Key(hash));
    }

    private static string Key(byte[] apiKeyHash) => "api-key:" + Convert.ToHexString(apiKeyHash);
}
