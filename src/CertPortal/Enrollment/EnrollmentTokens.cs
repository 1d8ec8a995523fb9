using System.Security.Cryptography;
using System.Text;
using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Enrollment;

public sealed record CreateTokenRequest(string? Email, string? DisplayName, string? Profile, int? ValidHours);

/// <summary><c>EnrollmentUrl</c>: the link to send the person (on <c>CertPortal:PortalUrl</c>, https).</summary>
public sealed record CreatedToken(Guid Id, string Token, string Email, string DisplayName, string Profile, DateTimeOffset ExpiresAt, string EnrollmentUrl);

public sealed record TokenView(Guid Id, string Email, string DisplayName, string Profile, string Status,
    DateTimeOffset CreatedAt, string CreatedBy, DateTimeOffset ExpiresAt, DateTimeOffset? UsedAt, DateTimeOffset? RevokedAt, string? CertificateSerial)
{
    public static TokenView From(EnrollmentToken t, DateTimeOffset now) => new(t.Id, t.Email, t.DisplayName, Names.Of(t.Profile),
        Names.Of(t.StatusAt(now)), t.CreatedAt, t.CreatedBy, t.ExpiresAt, t.UsedAt, t.RevokedAt, t.CertificateSerial);
}

/// <summary>Enrollment tokens: a secret shown once, stored as SHA-256 (the secret has 256 random bits,
/// so a fast hash is enough: nothing to brute-force), spent exactly once.</summary>
public sealed class EnrollmentTokens(CertPortalDbContext db, CertPortalOptions options, TimeProvider time)
{
    public const string Prefix = "cpt_";
    public const int MaxDisplayNameLength = 128;

    public async Task<Outcome<CreatedToken>> CreateAsync(CreateTokenRequest request, string actor, CancellationToken ct)
    {
        if (!Mailbox.TryNormalize(request.Email, out var email, out var error))
            return Failure.Unprocessable("Invalid email.", error);
        if (!Mailbox.DomainAllowed(email, options.AllowedDomains))
            return Failure.Unprocessable("Domain not allowed.",
                $"This CA issues only for {string.Join(", ", options.AllowedDomains)}; '{Mailbox.Domain(email)}' is not one of them.");
        var displayName = (request.DisplayName ?? "").Trim();
        if (displayName.Length > MaxDisplayNameLength || displayName.Any(char.IsControl))
            return Failure.Unprocessable("Invalid displayName.", $"displayName must be at most {MaxDisplayNameLength} printable characters.");
        if (!Names.TryParseProfile(request.Profile, out var profile))
            return Failure.Unprocessable("Invalid profile.", "profile must be one of signing, encryption, dual.");
        var hours = request.ValidHours ?? options.Issuance.DefaultTokenValidHours;
        if (hours < 1 || hours > options.Issuance.MaxTokenValidHours)
            return Failure.Unprocessable("Invalid validHours.", $"validHours must be between 1 and {options.Issuance.MaxTokenValidHours}.");

        var secret = Prefix + Base64Url.Encode(RandomNumberGenerator.GetBytes(32));
        var now = time.GetUtcNow();
        var token = new EnrollmentToken
        {
            Id = Guid.CreateVersion7(now),
            TokenHash = Hash(secret),
            Email = email,
            DisplayName = displayName,
            Profile = profile,
            CreatedAt = now,
            CreatedBy = actor,
            ExpiresAt = now.AddHours(hours),
        };
        db.EnrollmentTokens.Add(token);
        AuditLog.Record(db, now, actor, AuditActions.TokenCreated, $"token:{token.Id}",
            new { token.Email, profile = Names.Of(profile), token.ExpiresAt });
        await db.SaveChangesAsync(ct);
        return new CreatedToken(token.Id, secret, email, displayName, Names.Of(profile), token.ExpiresAt, options.EnrollmentUrl(secret));
    }

    public async Task<IReadOnlyList<TokenView>> ListAsync(string? email, string? status, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var q = db.EnrollmentTokens.AsNoTracking();
        if (!string.IsNullOrWhiteSpace(email)) q = q.Where(t => t.Email == email.Trim());
        var all = await q.OrderByDescending(t => t.CreatedAt).Take(1000).ToListAsync(ct);
        return all.Select(t => TokenView.From(t, now))
            .Where(v => string.IsNullOrWhiteSpace(status) || string.Equals(v.Status, status, StringComparison.OrdinalIgnoreCase))
            .ToList();
    }

    public async Task<Outcome<TokenView>> RevokeAsync(Guid id, string actor, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var token = await db.EnrollmentTokens.FirstOrDefaultAsync(t => t.Id == id, ct);
        if (token is null) return Failure.NotFound($"No enrollment token has id {id}.");
        if (token.UsedAt is not null)
            return Failure.Conflict($"The token was already used for certificate {token.CertificateSerial}; revoke that certificate instead.");
        if (token.RevokedAt is null)
        {
            // Conditional: if an enrollment spends the token at this very moment, exactly one of the two wins.
            var changed = await db.EnrollmentTokens.Where(t => t.Id == id && t.UsedAt == null && t.RevokedAt == null)
                .ExecuteUpdateAsync(s => s.SetProperty(t => t.RevokedAt, now), ct);
            if (changed == 0) return Failure.Conflict("The token was used while it was being revoked; revoke the certificate instead.");
            AuditLog.Record(db, now, actor, AuditActions.TokenRevoked, $"token:{id}", new { token.Email });
            await db.SaveChangesAsync(ct);
            await db.Entry(token).ReloadAsync(ct);
        }
        return TokenView.From(token, now);
    }

    /// <summary>Finds a token by its secret. Lookup is by hash; the final comparison is constant-time.</summary>
    public async Task<Outcome<EnrollmentToken>> FindUsableAsync(string? secret, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(secret) || secret.Length > 200)
            return Failure.Forbidden("Invalid enrollment token.", "The enrollment token is missing or unknown.");
        var hash = Hash(secret.Trim());
        var token = await db.EnrollmentTokens.AsNoTracking().FirstOrDefaultAsync(t => t.TokenHash == hash, ct);
        if (token is null || !CryptographicOperations.FixedTimeEquals(token.TokenHash, hash))
            return Failure.Forbidden("Invalid enrollment token.", "The enrollment token is missing or unknown.");
        return token.StatusAt(time.GetUtcNow()) switch
        {
            TokenStatus.Pending => token,
            TokenStatus.Used => Failure.Forbidden("Enrollment token already used.", "This enrollment token has already been used. Ask your administrator for a new one."),
            TokenStatus.Expired => Failure.Forbidden("Enrollment token expired.", $"This enrollment token expired at {token.ExpiresAt:u}. Ask your administrator for a new one."),
            _ => Failure.Forbidden("Enrollment token revoked.", "This enrollment token has been revoked. Ask your administrator for a new one."),
        };
    }

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
