using System.Security.Cryptography;

namespace CertPortal.Authority;

/// <summary>Certificate serial numbers: 16 bytes from the CSPRNG (S/MIME BR 7.1: positive, at least
/// 64 random bits, shorter than 20 octets). The first byte is 0x01-0x7F so the DER INTEGER is
/// positive and minimally encoded without a padding zero.</summary>
public static class SerialNumber
{
    public const int Length = 16;

    public static byte[] New()
    {
        var serial = RandomNumberGenerator.GetBytes(Length);
        serial[0] = (byte)((serial[0] & 0x7F) | 0x01);
        return serial;
    }

    public static string ToHex(ReadOnlySpan<byte> serial) => Convert.ToHexString(serial);

    /// <summary>Accepts the forms people paste: upper or lower case, with or without colons or spaces.</summary>
    public static bool TryNormalize(string? input, out string hex)
    {
        hex = "";
        if (string.IsNullOrWhiteSpace(input) || input.Length > 128) return false;
        var s = input.Replace(":", "").Replace(" ", "").ToUpperInvariant();
        if (s.Length is 0 or > 64 || !s.All(Uri.IsHexDigit)) return false;
        if (s.Length % 2 == 1) s = "0" + s;
        hex = s;
        return true;
    }
}
