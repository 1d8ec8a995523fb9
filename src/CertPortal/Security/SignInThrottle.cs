using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Security;

/// <summary>Slows password guessing on the console: after <see cref="MaxFailures"/> failed sign-ins for one
/// name within <see cref="Window"/> (and since its last successful sign-in), further attempts are refused
/// without checking the password until the window has passed. The count comes from the audit log, so it holds
/// across restarts and across instances sharing one PostgreSQL database. A name is counted under its audit actor (the
/// <c>key</c> below): an account's name, or for any other text its <see cref="SignInNames.UnknownAccountActor"/>, so that names
/// which are no account are throttled alike without being stored.</summary>
public sealed class SignInThrottle(CertPortalDbContext db, TimeProvider time)
{
    public const int MaxFailures = 5;
    public static readonly TimeSpan Window = TimeSpan.FromMinutes(15);

    public const string FailedAction = "account.sign-in-failed";
    public const string SucceededAction = "account.signed-in";
    public const string ThrottledAction = "account.sign-in-throttled";

    /// <summary>Starts a sign-in for <paramref name="key"/>, or null when another one for the same name (or one sharing its stripe)
    /// is under way on any node. The throttle counts failures once they are recorded, after the password check (PBKDF2, a
    /// large part of a second); attempts sent at once all saw fewer than <see cref="MaxFailures"/> and were all checked, so a
    /// burst bought as many guesses as it had requests. Held until the attempt's outcome is recorded. One of 256 stripes
    /// (the first byte of the name's SHA-256): a lock per name would keep one entry per name ever tried on SQLite.</summary>
    public Task<HeldLock?> TryBeginAsync(string key, CancellationToken ct) =>
        db.TryHoldNamedAsync($"sign-in:{System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(key))[0]}", ct);

    public async Task<bool> IsThrottledAsync(string key, CancellationToken ct)
    {
        var recent = await SignInsSince(db, key, time.GetUtcNow() - Window).ToListAsync(ct);
        var lastSuccess = recent.Where(e => e.Action == SucceededAction).Select(e => (DateTimeOffset?)e.At).Max();
        return recent.Count(e => e.Action == FailedAction && (lastSuccess is null || e.At > lastSuccess)) >= MaxFailures;
    }

    internal sealed record SignIn(DateTimeOffset At, string Action);

    /// <summary>The name's sign-ins (failed or not) after <paramref name="since"/>, read through IX_AuditEvents_SignIns, which
    /// holds only sign-in events: its filter is this query's Action condition, as SQLite needs to use a partial index.</summary>
    internal static IQueryable<SignIn> SignInsSince(CertPortalDbContext db, string key, DateTimeOffset since) => db.AuditEvents.AsNoTracking()
        .Where(e => e.At > since && e.Actor == key && (e.Action == FailedAction || e.Action == SucceededAction))
        .Select(e => new SignIn(e.At, e.Action));
}
