using System.Globalization;
using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using CertPortal.Auditing;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Security;

public sealed record CreateAccountRequest(string? Name, string? DisplayName, string? Role, string? Password)
{
    // The password must never reach a log through a record's generated ToString.
    public override string ToString() => $"account request for {Name} ({Role})";
}

/// <summary>The API key appears in this response only.</summary>
public sealed record CreatedAccount(Guid Id, string Name, string DisplayName, string Role, string ApiKey)
{
    // The API key is shown once, to the caller; never to a log through a record's generated ToString.
    public override string ToString() => $"account {Id} {Name} ({Role})";
}

public sealed record AccountView(Guid Id, string Name, string DisplayName, string Role, bool HasPassword,
    DateTimeOffset CreatedAt, string CreatedBy, DateTimeOffset? DisabledAt)
{
    public static AccountView From(Account a) =>
        new(a.Id, a.Name, a.DisplayName, a.Role, a.PasswordHash is not null, a.CreatedAt, a.CreatedBy, a.DisabledAt);
}

/// <summary>Administrator, auditor and key-recovery-agent accounts. API keys carry 256 random bits,
/// so they are stored as SHA-256 and looked up by that hash: the lookup compares hashes of a secret
/// nobody can guess, which leaks nothing through timing.</summary>
public sealed partial class Accounts(CertPortalDbContext db, TimeProvider time, ConsoleSessions sessions, ApiKeyAccounts apiKeys)
{
    public const string ApiKeyPrefix = "cpk_";
    public static readonly string[] AllRoles = [Roles.Administrator, Roles.Auditor, Roles.RecoveryAgent];

    /// <summary>The claim that carries <see cref="Account.Id"/> (as <see cref="ClaimTypes.NameIdentifier"/>).</summary>
    public static Guid? IdOf(ClaimsPrincipal user) =>
        Guid.TryParse(user.FindFirstValue(ClaimTypes.NameIdentifier), out var id) ? id : null;

    /// <summary>The claim that carries <see cref="Account.SessionEpoch"/> as it was when the session began.</summary>
    public const string SessionEpochClaim = "certportal:session-epoch";

    public static int? SessionEpochOf(ClaimsPrincipal user) =>
        int.TryParse(user.FindFirstValue(SessionEpochClaim), NumberStyles.None, CultureInfo.InvariantCulture, out var epoch) ? epoch : null;

    public static ClaimsPrincipal PrincipalFor(Account account, string authenticationType) =>
        new(new ClaimsIdentity(
        [
            new Claim(ClaimTypes.NameIdentifier, account.Id.ToString("D")),
            new Claim(ClaimTypes.Name, account.Name),
            new Claim(ClaimTypes.Role, account.Role),
            new Claim(SessionEpochClaim, account.SessionEpoch.ToString(CultureInfo.InvariantCulture)),
        ], authenticationType));

    [GeneratedRegex("^[a-z0-9][a-z0-9._@-]{0,63}$")]
    private static partial Regex NamePattern();

    /// <summary>The audit log's actors that are not accounts (the admin API key, <see cref="AuditLog.ActorOf"/>'s fallbacks, the setup
    /// page, enrollees, the renewal and directory-enrollment workers): an account so named would be indistinguishable from them there.
    /// The others carry a colon (system:…, holder:…, cli:…), which a name cannot.</summary>
    public async Task<Outcome<CreatedAccount>> CreateAsync(CreateAccountRequest request, string actor, CancellationToken ct)
    {
        var name = NormalizeName(request.Name);
        if (!NamePattern().IsMatch(name))
            return Failure.Unprocessable("Invalid name.", "name must be 1-64 characters: a-z, 0-9, '.', '_', '@', '-', starting with a letter or digit.");
        if (AuditActors.All.Contains(name))
            return Failure.Unprocessable("Reserved name.", $"'{name}' names the service itself in the audit log; choose another name.");
        var displayName = (request.DisplayName ?? name).Trim();
        if (displayName.Length > 128 || displayName.Any(char.IsControl))
            return Failure.Unprocessable("Invalid displayName.", "displayName must be at most 128 printable characters.");
        if (request.Role is not { } role || !AllRoles.Contains(role))
            return Failure.Unprocessable("Invalid role.", $"role must be one of {string.Join(", ", AllRoles)}.");
        if (request.Password is { } password && PasswordHashing.Weakness(password) is { } weakness)
            return Failure.Unprocessable("Invalid password.", weakness);
        if (await db.Accounts.AnyAsync(a => a.Name == name, ct))
            return Failure.Conflict($"An account named '{name}' already exists.");

        var apiKey = ApiKeyPrefix + Base64Url.Encode(RandomNumberGenerator.GetBytes(32));
        var now = time.GetUtcNow();
        var account = new Account
        {
            Id = Guid.CreateVersion7(now),
            Name = name,
            DisplayName = displayName,
            Role = role,
            ApiKeyHash = HashApiKey(apiKey),
            PasswordHash = request.Password is null ? null : PasswordHashing.Hash(request.Password),
            CreatedAt = now,
            CreatedBy = actor,
        };
        db.Accounts.Add(account);
        AuditLog.Record(db, now, actor, AuditActions.AccountCreated, $"account:{account.Id}", new { account.Name, account.Role });
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException)
        {
            // Two concurrent creations of one name: the unique index decided.
            if (await db.Accounts.AsNoTracking().AnyAsync(a => a.Name == name, CancellationToken.None))
                return Failure.Conflict($"An account named '{name}' already exists.");
            throw;
        }
        return new CreatedAccount(account.Id, name, displayName, role, apiKey);
    }

    public async Task<IReadOnlyList<AccountView>> ListAsync(CancellationToken ct) =>
        (await db.Accounts.AsNoTracking().OrderBy(a => a.Name).ToListAsync(ct)).Select(AccountView.From).ToList();

    /// <summary>Disables an account: its API key and console sessions stop working. Refused (409) for the last enabled
    /// administrator account (see <see cref="EnabledAdministrators"/>).</summary>
    public async Task<Outcome<AccountView>> DisableAsync(Guid id, string actor, CancellationToken ct)
    {
        await using var tx = await BeginAdministratorChangeAsync(ct);
        var account = await db.Accounts.FirstOrDefaultAsync(a => a.Id == id, ct);
        if (account is null) return Failure.NotFound($"No account with id {id}.");
        if (account.DisabledAt is null)
        {
            if (await IsLastAdministratorAsync(account, ct)) return LastAdministrator(account, "disabled");
            account.DisabledAt = time.GetUtcNow();
            AuditLog.Record(db, account.DisabledAt.Value, actor, AuditActions.AccountDisabled, $"account:{account.Id}", new { account.Name });
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
            sessions.Forget(account.Id);
            apiKeys.Forget(account);
        }
        return AccountView.From(account);
    }

    /// <summary>Changes what an account may do; its open console sessions end at their next request. Refused (409) when it
    /// would demote the last enabled administrator account.</summary>
    public async Task<Outcome<AccountView>> ChangeRoleAsync(Guid id, string? role, string actor, CancellationToken ct)
    {
        if (role is null || !AllRoles.Contains(role))
            return Failure.Unprocessable("Invalid role.", $"role must be one of {string.Join(", ", AllRoles)}.");
        await using var tx = await BeginAdministratorChangeAsync(ct);
        var account = await db.Accounts.FirstOrDefaultAsync(a => a.Id == id, ct);
        if (account is null) return Failure.NotFound($"No account with id {id}.");
        if (account.Role != role)
        {
            if (await IsLastAdministratorAsync(account, ct)) return LastAdministrator(account, "demoted");
            var previous = account.Role;
            account.Role = role;
            AuditLog.Record(db, time.GetUtcNow(), actor, AuditActions.AccountRoleChanged, $"account:{account.Id}", new { account.Name, previous, role });
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
            sessions.Forget(account.Id);
            apiKeys.Forget(account);
        }
        return AccountView.From(account);
    }

    /// <summary>What "an administrator is left" counts: enabled accounts with the administrator role, with a password or only
    /// an API key (either can create the next administrator). The admin API key is not one: it is the installation's bootstrap
    /// and break-glass credential, kept by whoever runs the servers, not an account anyone signs in with, and an operator may
    /// hand it to nobody; counting it would make the guard meaningless, since it always exists.</summary>
    public static IQueryable<Account> EnabledAdministrators(CertPortalDbContext db) =>
        db.Accounts.Where(a => a.Role == Roles.Administrator && a.DisabledAt == null);

    /// <summary>Every change that can take an enabled administrator away is decided one at a time, in one transaction with its
    /// check: two administrators disabling each other at once each saw the other still enabled and both went, leaving none.
    /// SQLite's write transaction excludes other writers (the accounts command's too); PostgreSQL, whose writers run at once
    /// under read committed, takes a named lock before the account is read, so the count below sees the other's commit.</summary>
    private async Task<Microsoft.EntityFrameworkCore.Storage.IDbContextTransaction> BeginAdministratorChangeAsync(CancellationToken ct)
    {
        var tx = await db.Database.BeginTransactionAsync(ct);
        await db.LockNamedAsync("administrators", ct);
        return tx;
    }

    private async Task<bool> IsLastAdministratorAsync(Account account, CancellationToken ct) =>
        account is { Role: Roles.Administrator, DisabledAt: null } &&
        !await EnabledAdministrators(db).AnyAsync(a => a.Id != account.Id, ct);

    private static Failure LastAdministrator(Account account, string change) => new(FailureKind.Conflict, "Last administrator.",
        $"'{account.Name}' is the last enabled administrator account: the last enabled administrator account cannot be {change}; " +
        "create another first (the admin API key does not count: it is not an account).");

    /// <summary>Sign-out: ends every console session of the account, on every node (others within
    /// <see cref="ConsoleSessions.CacheFor"/>). A cookie is a bearer credential valid for 8 sliding hours; deleting it from the
    /// browser that signed out leaves any copy of it (another browser, a shared machine's profile, a stolen value) working,
    /// so the account's epoch moves on and cookies issued under the old one are refused.</summary>
    public async Task EndSessionsAsync(Guid id, string actor, CancellationToken ct)
    {
        // One statement, so two sign-outs at once both count and neither overwrites a concurrent role change; the audit
        // record commits with it.
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        var changed = await db.Accounts.Where(a => a.Id == id)
            .ExecuteUpdateAsync(u => u.SetProperty(a => a.SessionEpoch, a => a.SessionEpoch + 1), ct);
        if (changed == 0) return;
        AuditLog.Record(db, time.GetUtcNow(), actor, AuditActions.AccountSignedOut, $"account:{id}", null);
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        sessions.Forget(id);
    }

    /// <summary>The enabled account with this API key hash (see <see cref="ApiKeyAccounts"/>, which remembers it).</summary>
    public Task<Account?> FindByApiKeyHashAsync(byte[] hash, CancellationToken ct) =>
        db.Accounts.AsNoTracking().FirstOrDefaultAsync(a => a.ApiKeyHash == hash && a.DisabledAt == null, ct);

    /// <summary>A name as accounts are named: what <see cref="CreateAsync"/> stores and a sign-in is compared with.</summary>
    public static string NormalizeName(string? name) => (name ?? "").Trim().ToLowerInvariant();

    /// <summary>The account named <paramref name="normalizedName"/> (<see cref="NormalizeName"/>), enabled or not, or null. Text
    /// that cannot be an account's name is not looked up (which tells nothing a reader of <see cref="NamePattern"/> does not know).</summary>
    public Task<Account?> FindByNameAsync(string normalizedName, CancellationToken ct) => NamePattern().IsMatch(normalizedName)
        ? db.Accounts.AsNoTracking().FirstOrDefaultAsync(a => a.Name == normalizedName, ct)
        : Task.FromResult<Account?>(null);

    /// <summary>The account when the password is right and the account enabled. Always one PBKDF2 verification, against a
    /// dummy hash for no account or one without a password, so response time does not reveal which names exist.</summary>
    public static Account? CheckPassword(Account? account, string? password)
    {
        var ok = PasswordHashing.Verify(password ?? "", account?.PasswordHash ?? DummyHash);
        return ok && account is { PasswordHash: not null, DisabledAt: null } ? account : null;
    }

    private static readonly string DummyHash = PasswordHashing.Hash("not-a-real-password-" + Guid.NewGuid());

    public static byte[] HashApiKey(string apiKey) => SHA256.HashData(Encoding.UTF8.GetBytes(apiKey));
}
