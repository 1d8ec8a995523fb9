using System.Security.Cryptography;

namespace CertPortal.Escrow;

/// <summary>
/// Shamir's (M, N) threshold secret sharing (Shamir, "How to Share a Secret", CACM 1979)
/// over GF(2^8) with the AES reduction polynomial x^8 + x^4 + x^3 + x + 1 (0x11B, FIPS 197 §4.2).
/// Each byte of the secret is the constant term of its own random polynomial of degree M-1.
/// </summary>
/// <remarks>
/// Share encoding: <c>x (1 byte, 1..N) || y (secret length bytes)</c>.
/// Any M shares reconstruct the secret; M-1 shares are statistically independent of it,
/// because the M-1 non-constant coefficients are uniform and fresh for every split.
/// </remarks>
public static class ShamirSecretSharing
{
    public const int MinThreshold = 2;

    // x is one byte and x = 0 would reveal the secret itself, so at most 255 shares.
    public const int MaxShares = 255;

    /// <summary>Splits <paramref name="secret"/> into <paramref name="shareCount"/> shares, any <paramref name="threshold"/> of which recombine it.</summary>
    /// <exception cref="ArgumentException">Empty secret.</exception>
    /// <exception cref="ArgumentOutOfRangeException">Not 2 &lt;= threshold &lt;= shareCount &lt;= 255.</exception>
    public static byte[][] Split(ReadOnlySpan<byte> secret, int threshold, int shareCount)
    {
        if (secret.IsEmpty)
            throw new ArgumentException("The secret must not be empty.", nameof(secret));
        if (threshold < MinThreshold)
            throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "The threshold must be at least 2.");
        if (shareCount < threshold)
            throw new ArgumentOutOfRangeException(nameof(shareCount), shareCount, "The share count must be at least the threshold.");
        if (shareCount > MaxShares)
            throw new ArgumentOutOfRangeException(nameof(shareCount), shareCount, "At most 255 shares are possible in GF(2^8).");

        var shares = new byte[shareCount][];
        for (int i = 0; i < shareCount; i++)
        {
            shares[i] = new byte[1 + secret.Length];
            shares[i][0] = (byte)(i + 1);
        }

        // coefficients[0] = secret byte, coefficients[1..M-1] uniformly random (fresh per byte).
        byte[] coefficients = new byte[threshold];
        try
        {
            for (int b = 0; b < secret.Length; b++)
            {
                coefficients[0] = secret[b];
                RandomNumberGenerator.Fill(coefficients.AsSpan(1));
                for (int i = 0; i < shareCount; i++)
                    shares[i][1 + b] = GaloisField256.EvaluatePolynomial(coefficients, shares[i][0]);
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(coefficients);
        }
        return shares;
    }

    /// <summary>Recombines the secret from at least <c>threshold</c> distinct shares by Lagrange interpolation at x = 0.</summary>
    /// <remarks>
    /// Interpolation cannot detect a wrong or insufficient set of shares: fewer than M shares
    /// yield an unrelated value. Callers verify shares individually (<see cref="ShareCommitment"/>)
    /// and the result authenticates itself when it is used as an AES-GCM key (<see cref="KeyEnvelope"/>).
    /// </remarks>
    /// <exception cref="ArgumentException">Fewer than 2 shares, malformed share, x = 0, duplicate x or mismatched lengths.</exception>
    public static byte[] Combine(IReadOnlyList<byte[]> shares)
    {
        ArgumentNullException.ThrowIfNull(shares);
        if (shares.Count < MinThreshold)
            throw new ArgumentException("At least 2 shares are required.", nameof(shares));

        int length = -1;
        Span<bool> seen = stackalloc bool[256];
        foreach (var share in shares)
        {
            if (share is null || share.Length < 2)
                throw new ArgumentException("A share must hold an x byte and at least one y byte.", nameof(shares));
            if (length == -1)
                length = share.Length;
            else if (share.Length != length)
                throw new ArgumentException("All shares must have the same length.", nameof(shares));
            if (share[0] == 0)
                throw new ArgumentException("A share with x = 0 is invalid.", nameof(shares));
            if (seen[share[0]])
                throw new ArgumentException("Duplicate share x-coordinate " + share[0] + ".", nameof(shares));
            seen[share[0]] = true;
        }

        // Lagrange basis at 0 in characteristic 2 (subtraction is XOR):
        // l_j(0) = prod_{m != j} x_m / (x_m + x_j). The x-coordinates are public.
        int k = shares.Count;
        byte[] basis = new byte[k];
        for (int j = 0; j < k; j++)
        {
            byte numerator = 1, denominator = 1;
            for (int m = 0; m < k; m++)
            {
                if (m == j) continue;
                numerator = GaloisField256.Multiply(numerator, shares[m][0]);
                denominator = GaloisField256.Multiply(denominator, (byte)(shares[m][0] ^ shares[j][0]));
            }
            basis[j] = GaloisField256.Multiply(numerator, GaloisField256.Inverse(denominator));
        }

        byte[] secret = new byte[length - 1];
        for (int b = 0; b < secret.Length; b++)
        {
            byte acc = 0;
            for (int j = 0; j < k; j++)
                acc ^= GaloisField256.Multiply(basis[j], shares[j][1 + b]);
            secret[b] = acc;
        }
        return secret;
    }
}

/// <summary>Arithmetic in GF(2^8) modulo 0x11B (FIPS 197 §4.2).</summary>
/// <remarks>
/// Deliberately table-free: log/exp tables would be faster but index memory with secret
/// bytes (cache-timing side channel). The shift-and-add loop below runs a fixed 8 rounds
/// with masks instead of branches, so its timing does not depend on the operands.
/// </remarks>
internal static class GaloisField256
{
    public static byte Multiply(byte a, byte b)
    {
        int aa = a, bb = b, product = 0;
        for (int i = 0; i < 8; i++)
        {
            product ^= aa & -(bb & 1);          // add a if the low bit of b is set
            bb >>= 1;
            int carry = -((aa >> 7) & 1);       // reduce by 0x11B if x^8 appears (FIPS 197 §4.2.1 xtime)
            aa = ((aa << 1) ^ (0x11B & carry)) & 0xFF;
        }
        return (byte)product;
    }

    /// <summary>a^-1 = a^254 (Lagrange: a^255 = 1 for a != 0); Inverse(0) = 0. Fixed sequence of multiplications.</summary>
    public static byte Inverse(byte a)
    {
        byte a2 = Multiply(a, a);          // a^2
        byte a3 = Multiply(a2, a);         // a^3
        byte a6 = Multiply(a3, a3);        // a^6
        byte a12 = Multiply(a6, a6);       // a^12
        byte a15 = Multiply(a12, a3);      // a^15
        byte a30 = Multiply(a15, a15);     // a^30
        byte a60 = Multiply(a30, a30);     // a^60
        byte a120 = Multiply(a60, a60);    // a^120
        byte a126 = Multiply(a120, a6);    // a^126
        byte a252 = Multiply(a126, a126);  // a^252
        return Multiply(a252, a2);         // a^254
    }

    /// <summary>Horner evaluation of sum coefficients[i] * x^i.</summary>
    public static byte EvaluatePolynomial(ReadOnlySpan<byte> coefficients, byte x)
    {
        byte result = 0;
        for (int i = coefficients.Length - 1; i >= 0; i--)
            result = (byte)(Multiply(result, x) ^ coefficients[i]);
        return result;
    }
}
