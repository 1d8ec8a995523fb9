using System.Security.Cryptography;
using System.Text;
using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Enrollment;

/// <summary><c>Send</c>: mail the link to the person (needs <c>CertPortal:Mail</c>); the response then leaves the
/// secret out unless <c>ShowLink</c>.</summary>
public sealed record CreateTokenRequest(string? Email, string? DisplayName, string? Profile, int? ValidHours, bool Send = false, bool ShowLink = false);

/// <summary><c>EnrollmentUrl</c>: the link to send the person (on <c>CertPortal:PortalUrl</c>, https). Token and link
/// are null when the link was mailed (<c>NotificationId</c>) and not asked for.</summary>
public sealed record CreatedToken(Guid Id, string? Token, string Email, string DisplayName, string Profile, DateTimeOffset ExpiresAt, string? EnrollmentUrl)
{
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public long? NotificationId { get; init; }

    // The token (and the link that carries it) must never reach a log through a record's generated ToString.
    public override string ToString() => $"token {Id} for {Email} ({Profile}), expires {ExpiresAt:O}";
}

public sealed record TokenView(Guid Id, string Email, string DisplayName, string Profile, string Status,
    DateTimeOffset CreatedAt, string CreatedBy, DateTimeOffset ExpiresAt, DateTimeOffset? UsedAt, DateTimeOffset? RevokedAt, string? CertificateSerial)
{
    public static TokenView From(EnrollmentToken t, DateTimeOffset now) => new(t.Id, t.Email, t.DisplayName, Names.Of(t.Profile),
        Names.Of(t.StatusAt(now)), t.CreatedAt, t.CreatedBy, t.ExpiresAt, t.UsedAt, t.RevokedAt, t.CertificateSerial);
}

/// <summary>Enrollment tokens: a secret shown once, stored as SHA-256 (the secret has 256 random bits,
/// so a fast hash is enough: nothing to brute-force), spent exactly once.</summary>
/// <remarks>The request's EF Core context is taken from the request's services when a method reads through it: token
/// creation writes through the group writer and an enrollment reads its token on a connection of its own, and a pooled
/// context rented for them would only be reset and returned.</remarks>
public sealed class EnrollmentTokens(IServiceProvider services, GroupCommitWriter writer, CertPortalOptions options, TimeProvider time,
    SqliteReadConnections? readers = null, PostgresReadConnections? postgresReaders = null)
{
    private CertPortalDbContext Db => services.GetRequiredService<CertPortalDbContext>();

    public const string Prefix = "cpt_";
    public const int MaxDisplayNameLength = 128;
    /// <summary>X.520 ub-common-name: in DisplayName mode the display name is the certificate's CN.</summary>
    public const int MaxCommonNameLength = 64;

    /// <param name="alsoWrite">Adds rows that must commit with the token (an invitation's message); runs in the
    /// writer's transaction, possibly twice (see <see cref="GroupCommitWriter.WriteAsync{T}"/>). An exception it throws rolls
    /// the token back and is the caller's.</param>
    public async Task<Outcome<CreatedToken>> CreateAsync(CreateTokenRequest request, string actor, CancellationToken ct,
        Func<CertPortalDbContext, CreatedToken, CancellationToken, Task>? alsoWrite = null)
    {
        if (!Mailbox.TryNormalize(request.Email, out var email, out var error))
            return Failure.Unprocessable("Invalid email.", error);
        if (!Mailbox.DomainAllowed(email, options.AllowedDomains))
            return Failure.Unprocessable(DomainNotAllowedTitle,
                $"This CA issues only for {string.Join(", ", options.AllowedDomains)}; '{Mailbox.Domain(email)}' is not one of them.");
        var displayName = (request.DisplayName ?? "").Trim();
        if (displayName.Length > MaxDisplayNameLength || displayName.Any(char.IsControl))
            return Failure.Unprocessable("Invalid displayName.", $"displayName must be at most {MaxDisplayNameLength} printable characters.");
        if (options.Issuance.SubjectCommonName == SubjectCommonName.DisplayName && displayName.Length is 0 or > MaxCommonNameLength)
            return Failure.Unprocessable("Invalid displayName.",
                $"displayName (the person's name, 1 to {MaxCommonNameLength} characters) is required: this CA puts it in the certificate's common name.");
        if (!Names.TryParseProfile(request.Profile, out var profile))
            return Failure.Unprocessable("Invalid profile.", "profile must be one of signing, encryption, dual.");
        var hours = request.ValidHours ?? options.Issuance.DefaultTokenValidHours;
        if (hours < 1 || hours > options.Issuance.MaxTokenValidHours)
            return Failure.Unprocessable("Invalid validHours.", $"validHours must be between 1 and {options.Issuance.MaxTokenValidHours}.");

        var secret = Prefix + Base64Url.Encode(RandomNumberGenerator.GetBytes(SecretBytes));
        var hash = Hash(secret);
        var now = time.GetUtcNow();
        var id = Guid.CreateVersion7(now);
        var created = new CreatedToken(id, secret, email, displayName, Names.Of(profile), now.AddHours(hours), options.EnrollmentUrl(secret));
        // Through the group writer: a burst of token creations (a department onboarded at once) shares commits.
        await writer.WriteAsync(async (w, wct) =>
        {
            // Plain inserts (DirectSql): a burst of token creations is the other hot write path.
            await DirectSql.InsertTokenAsync(w, new EnrollmentToken
            {
                Id = id,
                TokenHash = hash,
                Email = email,
                DisplayName = displayName,
                Profile = profile,
                CreatedAt = now,
                CreatedBy = actor,
                ExpiresAt = now.AddHours(hours),
            }, wct);
            await AuditLog.RecordNowAsync(w, now, actor, AuditActions.TokenCreated, $"token:{id}",
                new { Email = email, profile = Names.Of(profile), ExpiresAt = now.AddHours(hours) }, wct);
            if (alsoWrite is not null) await alsoWrite(w, created, wct);
            return true;
        });
        return created;
    }

    public async Task<IReadOnlyList<TokenView>> ListAsync(string? email, string? status, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var q = Db.EnrollmentTokens.AsNoTracking();
        if (!string.IsNullOrWhiteSpace(email)) q = q.Where(t => t.Email == email.Trim());
        var all = await q.OrderByDescending(t => t.CreatedAt).Take(1000).ToListAsync(ct);
        return all.Select(t => TokenView.From(t, now))
            .Where(v => string.IsNullOrWhiteSpace(status) || string.Equals(v.Status, status, StringComparison.OrdinalIgnoreCase))
            .ToList();
    }

    /// <param name="reason">Recorded in the audit record beside the mailbox (why a job withdrew the link); null for an administrator.</param>
    /// <param name="alsoWrite">Runs in the revocation's transaction after its rows: what it writes (directly, as ExecuteUpdate does: the
    /// transaction commits without a SaveChanges) commits with the revocation, and an exception it throws rolls the revocation back and
    /// is the caller's (a directory enrollment run's fence).</param>
    public async Task<Outcome<TokenView>> RevokeAsync(Guid id, string actor, CancellationToken ct, string? reason = null,
        Func<CertPortalDbContext, CancellationToken, Task>? alsoWrite = null)
    {
        var now = time.GetUtcNow();
        var db = Db;
        var token = await db.EnrollmentTokens.FirstOrDefaultAsync(t => t.Id == id, ct);
        if (token is null) return Failure.NotFound($"No enrollment token has id {id}.");
        if (token.UsedAt is not null)
            return Failure.Conflict($"The token was already used for certificate {token.CertificateSerial}; revoke that certificate instead.");
        if (token.RevokedAt is null)
        {
            // One transaction: the revocation is never without its audit record (nor, for a run, without its fence).
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            // Conditional: if an enrollment spends the token at this very moment, exactly one of the two wins.
            var changed = await db.EnrollmentTokens.Where(t => t.Id == id && t.UsedAt == null && t.RevokedAt == null)
                .ExecuteUpdateAsync(s => s.SetProperty(t => t.RevokedAt, now).SetProperty(t => t.RevokedBy, actor), ct);
            if (changed == 0) return Failure.Conflict("The token was used while it was being revoked; revoke the certificate instead.");
            // Written at once, not tracked: a revocation rolled back (by alsoWrite) leaves nothing for a later SaveChanges to write.
            await AuditLog.RecordNowAsync(db, now, actor, AuditActions.TokenRevoked, $"token:{id}",
                reason is null ? new { token.Email } : new { token.Email, Reason = reason }, ct);
            if (alsoWrite is not null) await alsoWrite(db, ct);
            await tx.CommitAsync(ct);
            await db.Entry(token).ReloadAsync(ct);
        }
        return TokenView.From(token, now);
    }

    /// <summary>Finds a token by its secret. Lookup is by hash; the final comparison is constant-time.</summary>
    public async Task<Outcome<EnrollmentToken>> FindUsableAsync(string? secret, CancellationToken ct)
    {
        var token = await FindAsync(secret, ct);
        if (token is null) return Unknown;
        return (RefusalAt(token, time.GetUtcNow()) ?? DomainRefusal(token.Email, options.AllowedDomains)) is { } refused ? refused : token;
    }

    /// <summary>The token with this secret whatever its status (a spent one lets a client collect its certificate), or null.</summary>
    public async Task<EnrollmentToken?> FindAsync(string? secret, CancellationToken ct) => (await FindWithKeyGenerationAsync(secret, ct)).Token;

    /// <summary><see cref="FindAsync"/>, and the key generation the escrow policy stores for the token's profile (null: configuration
    /// applies, see <c>KeyArchive.GenerationFor</c>), read together.</summary>
    public async Task<(EnrollmentToken? Token, KeyGenerationPolicy? StoredKeyGeneration)> FindWithKeyGenerationAsync(string? secret, CancellationToken ct)
    {
        if (HashOf(secret) is not { } hash) return (null, null);
        // One plain query (DirectSql): every enrollment looks its token up. Outside EF Core: on SQLite on a connection kept open
        // for it, on PostgreSQL on a data source of its own.
        var (token, stored) = readers is not null ? await DirectSql.FindTokenByHashAsync(readers, hash, ct)
            : postgresReaders is not null ? await DirectSql.FindTokenByHashAsync(postgresReaders, hash, ct)
            : await DirectSql.FindTokenByHashAsync(Db, hash, ct);
        return token is not null && CryptographicOperations.FixedTimeEquals(token.TokenHash, hash) ? (token, stored) : (null, null);
    }

    /// <summary>The hash a token is looked up by, or null for what cannot be a token: every token is <see cref="Prefix"/> and
    /// <see cref="SecretBytes"/> random bytes in base64url (43 characters), so anything else is refused as unknown without a read
    /// (and, with an ECDSA issuing key, without the CSR check and the claim in the group writer that a token's shape costs).</summary>
    internal static byte[]? HashOf(string? secret) => secret?.Trim() is { } trimmed && IsTokenShaped(trimmed) ? Hash(trimmed) : null;

    /// <summary>Names a token for the group writer (its units' keys): units that spend, claim or give back one token are never in one run
    /// of first steps, so none reads the token between another's claim and its give-back.</summary>
    internal static string WriterKey(byte[] hash) => "token:" + Convert.ToHexString(hash);

    private const int SecretBytes = 32;
    // Base64url without padding: 4 characters per 3 bytes, the last group shortened (43 for 32 bytes).
    private const int SecretLength = (SecretBytes * 4 + 2) / 3;

    private static bool IsTokenShaped(string s) =>
        s.Length == Prefix.Length + SecretLength && s.StartsWith(Prefix, StringComparison.Ordinal) &&
        !s.AsSpan(Prefix.Length).ContainsAnyExcept(Base64UrlAlphabet);

    private static readonly System.Buffers.SearchValues<char> Base64UrlAlphabet =
        System.Buffers.SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");

    public async Task<EnrollmentToken?> FindByIdAsync(Guid id, CancellationToken ct) =>
        await Db.EnrollmentTokens.AsNoTracking().FirstOrDefaultAsync(t => t.Id == id, ct);

    public static Failure Unknown => Failure.Forbidden("Invalid enrollment token.", "The enrollment token is missing or unknown.");

    public static Failure AlreadyUsed => Failure.Forbidden("Enrollment token already used.",
        "This enrollment token has already been used. Ask your administrator for a new one.");

    /// <summary>Why the token cannot be spent now, or null when it can.</summary>
    public static Failure? RefusalAt(EnrollmentToken token, DateTimeOffset now) => token.StatusAt(now) switch
    {
        TokenStatus.Pending => null,
        TokenStatus.Used => AlreadyUsed,
        TokenStatus.Expired => Failure.Forbidden("Enrollment token expired.", $"This enrollment token expired at {token.ExpiresAt:u}. Ask your administrator for a new one."),
        _ => Failure.Forbidden("Enrollment token revoked.", "This enrollment token has been revoked. Ask your administrator for a new one."),
    };

    public const string DomainNotAllowedTitle = "Domain not allowed.";

    /// <summary>Why no certificate may be issued for <paramref name="email"/> now that <c>AllowedDomains</c> is what it is, or null. Asked
    /// again at issuance, not only when the token was made: a domain taken off the list (given up, or no longer the organisation's) must
    /// get no certificate from a token made before, nor from a renewal of a certificate issued before, for as long as those would last.</summary>
    public static Failure? DomainRefusal(string email, IReadOnlyCollection<string> allowed) =>
        Mailbox.DomainAllowed(email, allowed) ? null
            : Failure.Forbidden(DomainNotAllowedTitle,
                $"This CA no longer issues certificates for '{Mailbox.Domain(email)}'; it issues for {string.Join(", ", allowed)}. Ask your administrator.");

    public static byte[] Hash(string secret) => SHA256.HashData(Encoding.UTF8.GetBytes(secret));
}

/// <summary>The names the API uses for enums (camelCase, as the JSON contract says).</summary>
public static class Names
{
    public static string Of<T>(T value) where T : struct, Enum
    {
        var s = value.ToString();
        return char.ToLowerInvariant(s[0]) + s[1..];
    }

    public static bool TryParseProfile(string? s, out CertificateProfileName profile) =>
        Enum.TryParse(s?.Trim(), ignoreCase: true, out profile) && Enum.IsDefined(profile) && !int.TryParse(s, out _);
}
