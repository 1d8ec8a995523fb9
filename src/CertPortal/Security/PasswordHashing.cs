using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace CertPortal.Security;

/// <summary>Console passwords: PBKDF2-HMAC-SHA256 with a per-password salt, stored as
/// <c>pbkdf2-sha256$iterations$salt$hash</c> so the cost can be raised later without breaking old hashes.</summary>
public static class PasswordHashing
{
    // OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
    public const int Iterations = 600_000;
    public const int MinLength = 12;
    public const int MaxLength = 256;
    private const string Scheme = "pbkdf2-sha256";

    public static string Hash(string password)
    {
        var salt = RandomNumberGenerator.GetBytes(16);
        var hash = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, Iterations, HashAlgorithmName.SHA256, 32);
        return string.Join('$', Scheme, Iterations.ToString(CultureInfo.InvariantCulture), Convert.ToBase64String(salt), Convert.ToBase64String(hash));
    }

    public static bool Verify(string password, string? stored)
    {
        var parts = (stored ?? "").Split('$');
        if (parts.Length != 4 || parts[0] != Scheme || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var iterations)
            || iterations < 1 || password.Length > MaxLength)
            return false;
        byte[] salt, expected;
        try { salt = Convert.FromBase64String(parts[2]); expected = Convert.FromBase64String(parts[3]); }
        catch (FormatException) { return false; }
        var actual = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA256, expected.Length);
        return CryptographicOperations.FixedTimeEquals(actual, expected);
    }

    /// <summary>Null when acceptable, else what is wrong (never echoing the password).</summary>
    public static string? Weakness(string password) =>
        password.Length < MinLength ? $"password must be at least {MinLength} characters."
        : password.Length > MaxLength ? $"password must be at most {MaxLength} characters."
        : password.Any(char.IsControl) ? "password must not contain control characters."
        : null;
}
