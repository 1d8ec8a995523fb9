using System.Security.Cryptography;

namespace CertPortal.Authority;

/// <summary>Certificate serial numbers: 16 bytes, the time of issue in milliseconds since 1970 (6 bytes, big-endian) and then
/// 10 bytes (80 bits) from the CSPRNG (S/MIME BR 7.1: positive, non-sequential, at least 64 bits of CSPRNG output, shorter
/// than 20 octets). The time first makes a later serial sort after an earlier one, also as the upper-case hexadecimal the
/// database keys certificates by, so each new certificate's entry in the serial index goes to the index's right edge (one
/// B-tree page for a whole group of enrollments) instead of to a random page per certificate, which the group writer would
/// write to the WAL once more per certificate. The first byte is 0x01-0x7F so the DER INTEGER is positive and minimally
/// encoded without a padding zero: it is the time's own first byte from November 2004 (2^40 ms) until the year 6429 (2^47 ms),
/// so the order holds across those years; only a clock before 2004 (a test's) has its zero byte raised to 0x01.</summary>
public static class SerialNumber
{
    public const int Length = 16;
    private const int TimeLength = 6;

    public static byte[] New(DateTimeOffset issuedAt)
    {
        var serial = new byte[Length];
        var milliseconds = Math.Max(0, issuedAt.ToUnixTimeMilliseconds());
        for (var i = TimeLength - 1; i >= 0; i--, milliseconds >>= 8) serial[i] = (byte)milliseconds;
        RandomNumberGenerator.Fill(serial.AsSpan(TimeLength));
        serial[0] = (byte)Math.Max(serial[0] & 0x7F, 0x01);
        return serial;
    }

    public static string ToHex(ReadOnlySpan<byte> serial) => Convert.ToHexString(serial);

    /// <summary>Accepts the forms people paste: upper or lower case, with or without colons or spaces, with or without
    /// leading zero octets. The result is the integer's DER content octets in hex, as <see cref="ToHex"/> stores a serial:
    /// an ASN.1 dump or a form field padded to 20 octets shows "00:1A:..." for the serial OpenSSL prints as "1A...",
    /// and both name one certificate (X.690 8.3.2: the minimal encoding, one 00 only before a first octet of 80 or more).</summary>
    public static bool TryNormalize(string? input, out string hex)
    {
        hex = "";
        if (string.IsNullOrWhiteSpace(input) || input.Length > 128) return false;
        var s = input.Replace(":", "").Replace(" ", "").ToUpperInvariant();
        if (s.Length is 0 or > 64 || !s.All(Uri.IsHexDigit)) return false;
        if (s.Length % 2 == 1) s = "0" + s;
        var start = 0;
        while (start < s.Length - 2 && s[start] == '0' && s[start + 1] == '0') start += 2;
        s = s[start..];
        hex = s[0] >= '8' ? "00" + s : s;
        return true;
    }
}
