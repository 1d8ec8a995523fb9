using CertPortal.Data;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Caching.Memory;

namespace CertPortal.Security;

/// <summary>A console session follows its account: every cookie-authenticated request re-checks that the account
/// still exists, is enabled, has the role the cookie was issued for and has not signed out since (its session epoch). Disabling or demoting an account therefore
/// ends its open sessions at the next request instead of after the cookie's 8 hours. The account's state is cached
/// for <see cref="CacheFor"/> to spare the database a query per static page; changes made on this node evict
/// it at once (<see cref="Forget"/>), other nodes see them within that time.</summary>
public sealed class ConsoleSessions(IMemoryCache cache)
{
    public static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(5);

    internal sealed record AccountState(string Role, bool Enabled, int SessionEpoch);

    // Bumped by every Forget, as in ApiKeyAccounts: a read that overlapped a Forget may predate the change it follows (it read
    // "enabled", then the disable committed and forgot), so it answers but is not remembered. Remembered, it kept a disabled
    // account's sessions open on this node for up to CacheFor, though a change here is to apply at once.
    private long _epoch;

    public void Forget(Guid accountId)
    {
        Interlocked.Increment(ref _epoch);
        cache.Remove(Key(accountId));
    }

    /// <summary>The cookie handler's OnValidatePrincipal.</summary>
    public static async Task ValidateAsync(CookieValidatePrincipalContext context)
    {
        var principal = context.Principal;
        var id = principal is null ? null : Accounts.IdOf(principal);
        var sessions = context.HttpContext.RequestServices.GetRequiredService<ConsoleSessions>();
        var state = id is { } accountId ? await sessions.StateAsync(accountId, context.HttpContext) : null;
        if (state is { Enabled: true } && principal!.IsInRole(state.Role) && Accounts.SessionEpochOf(principal) == state.SessionEpoch) return;
        context.RejectPrincipal();
        await context.HttpContext.SignOutAsync(CookieAuthenticationDefaults.AuthenticationScheme);
    }

    private Task<AccountState?> StateAsync(Guid id, HttpContext http) =>
        StateAsync(id, ct => http.RequestServices.GetRequiredService<CertPortalDbContext>().Accounts.AsNoTracking().Where(a => a.Id == id)
            .Select(a => new AccountState(a.Role, a.DisabledAt == null && a.PasswordHash != null, a.SessionEpoch))
            .FirstOrDefaultAsync(ct), http.RequestAborted);

    /// <summary>The account's state, from the cache or <paramref name="read"/> (the database).</summary>
    internal async Task<AccountState?> StateAsync(Guid id, Func<CancellationToken, Task<AccountState?>> read, CancellationToken ct)
    {
        if (cache.TryGetValue(Key(id), out AccountState? state)) return state;
        var epoch = Interlocked.Read(ref _epoch);
        state = await read(ct);
        if (epoch == Interlocked.Read(ref _epoch)) cache.Set(Key(id), state, CacheFor);
        return state;
    }

    private static string Key(Guid id) => "console-session:" + id.ToString("N");
}
