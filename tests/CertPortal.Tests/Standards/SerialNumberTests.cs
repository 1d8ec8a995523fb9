using System.Formats.Asn1;
using System.Globalization;
using CertPortal.Authority;

namespace CertPortal.Tests.Standards;

/// <summary>S/MIME BR 7.1: serials positive, non-sequential, at least 64 bits of CSPRNG output, at most 20 octets. Ours begin
/// with their time of issue so that a later one sorts after an earlier one as the database stores them (the serial index then
/// grows at its right edge).</summary>
public sealed class SerialNumberTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 5, 14, 0, 0, TimeSpan.Zero);

    [Theory]
    [InlineData("1970-01-01T00:00:00Z")]
    [InlineData("2000-01-01T00:00:00Z")]
    [InlineData("2026-12-05T14:00:00.123Z")]
    [InlineData("2039-09-07T15:47:35.552Z")] // 2^41 ms: the first byte becomes 0x02
    [InlineData("2200-01-01T00:00:00Z")]
    public void A_serial_is_16_bytes_a_positive_and_minimally_encoded_integer(string at)
    {
        var serial = SerialNumber.New(DateTimeOffset.Parse(at, CultureInfo.InvariantCulture));
        Assert.Equal(SerialNumber.Length, serial.Length);
        Assert.InRange(serial[0], 0x01, 0x7F);
        var writer = new AsnWriter(AsnEncodingRules.DER);
        writer.WriteInteger(serial); // throws unless minimal
        Assert.Equal(serial, new AsnReader(writer.Encode(), AsnEncodingRules.DER).ReadIntegerBytes().ToArray());
    }

    [Fact]
    public void A_serial_made_later_sorts_after_an_earlier_one_as_the_database_stores_it()
    {
        for (var i = 0; i < 2000; i++)
        {
            var earlier = SerialNumber.ToHex(SerialNumber.New(Now.AddMilliseconds(i)));
            var later = SerialNumber.ToHex(SerialNumber.New(Now.AddMilliseconds(i + 1)));
            Assert.True(string.CompareOrdinal(earlier, later) < 0, $"{earlier} does not sort before {later}");
        }
        Assert.True(string.CompareOrdinal(SerialNumber.ToHex(SerialNumber.New(Now)), SerialNumber.ToHex(SerialNumber.New(Now.AddYears(20)))) < 0);
        // Across the first byte's steps: 0x02 begins in September 2039, 0x03 in August 2074 (an OR with 0x01 made 0x02 into
        // 0x03, so 2073's serials sorted after 2075's).
        foreach (var (a, b) in new[] { ("2039-09-01", "2039-10-01"), ("2073-12-31", "2075-01-01"), ("2040-01-01", "2110-01-01") })
        {
            var earlier = SerialNumber.ToHex(SerialNumber.New(DateTimeOffset.Parse(a + "T00:00:00Z", CultureInfo.InvariantCulture)));
            var later = SerialNumber.ToHex(SerialNumber.New(DateTimeOffset.Parse(b + "T00:00:00Z", CultureInfo.InvariantCulture)));
            Assert.True(string.CompareOrdinal(earlier, later) < 0, $"{a}'s {earlier} does not sort before {b}'s {later}");
        }
    }

    [Theory]
    [InlineData("1a:2B:3c", "1A2B3C")]
    [InlineData("00:1A:2B", "1A2B")]
    [InlineData("0000001A2B", "1A2B")]
    [InlineData("A2B", "0A2B")]
    [InlineData("8A:2B", "008A2B")] // as OpenSSL prints a serial whose DER content begins with 00
    [InlineData("00008A2B", "008A2B")]
    [InlineData("00 00", "00")]
    public void A_pasted_serial_becomes_the_hex_of_its_der_content(string pasted, string stored)
    {
        Assert.True(SerialNumber.TryNormalize(pasted, out var hex));
        Assert.Equal(stored, hex);
    }

    [Theory]
    [InlineData("")]
    [InlineData("::")]
    [InlineData("xyz")]
    public void A_pasted_serial_that_is_not_hex_is_refused(string pasted) => Assert.False(SerialNumber.TryNormalize(pasted, out _));

    [Fact]
    public void Serials_of_one_instant_differ_in_80_bits_from_the_csprng()
    {
        var serials = Enumerable.Range(0, 4096).Select(_ => SerialNumber.New(Now)).ToList();
        Assert.Equal(serials.Count, serials.Select(s => SerialNumber.ToHex(s)).Distinct().Count());
        Assert.All(serials, s => Assert.Equal(serials[0][..6], s[..6]));
        // Each of the last 10 bytes takes nearly all of its 256 values over 4,096 serials (a fixed or counted byte would not).
        for (var b = 6; b < SerialNumber.Length; b++)
            Assert.True(serials.Select(s => s[b]).Distinct().Count() > 200, $"byte {b} of the serial is not random");
    }
}
