using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using CertPortal.Enrollment;
using CertPortal.Revocation;

namespace CertPortal.Tests.Api;

/// <summary>An enrollment's answer writes its PEM strings through <see cref="PemJsonConverter"/>: the bytes must be exactly what
/// System.Text.Json's default encoder writes for the same values (clients and their tests see no difference), for PEM and for
/// anything else such a string might hold, with the chain's kept JSON following the chain it was made for.</summary>
public sealed class PemJsonConverterTests
{
    // The service's options: web defaults and enums as camelCase strings (Extensions.AddCertPortal).
    private static readonly JsonSerializerOptions Web = new(JsonSerializerDefaults.Web)
    {
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) },
    };

    /// <summary>The answer's shape without the converters.</summary>
    private sealed record PlainResult(string SerialNumber, string Email, string Profile, string CertificatePem, string ChainPem,
        DateTimeOffset NotBefore, DateTimeOffset NotAfter);

    [Fact]
    public void Answers_are_the_bytes_the_default_encoder_writes()
    {
        var now = new DateTimeOffset(2026, 12, 6, 5, 0, 0, TimeSpan.Zero);
        var chainA = Pem.Certificate(RandomNumberGenerator.GetBytes(900)) + "\n" + Pem.Certificate(RandomNumberGenerator.GetBytes(700)) + "\n";
        var chainB = Pem.Certificate(RandomNumberGenerator.GetBytes(800));
        // Chains alternate, as with two CA hierarchies in one process: each answer carries its own.
        foreach (var chain in new[] { chainA, chainA, chainB, chainA })
        {
            for (var i = 0; i < 20; i++)
            {
                var certificate = Pem.Certificate(RandomNumberGenerator.GetBytes(600 + i * 37));
                var result = new EnrollmentResult("0123456789ABCDEF", "alice+smime@example.com", "encryption", certificate, chain, now, now.AddDays(365));
                var expected = JsonSerializer.Serialize(new PlainResult(result.SerialNumber, result.Email, result.Profile, certificate, chain, now, now.AddDays(365)), Web);
                var written = JsonSerializer.Serialize(result, Web);
                Assert.Equal(expected, written);
                var read = JsonSerializer.Deserialize<EnrollmentResult>(written, Web)!;
                Assert.Equal(certificate, read.CertificatePem);
                Assert.Equal(chain, read.ChainPem);
            }
        }
        Assert.Contains("\\u002B", JsonSerializer.Serialize(chainA, Web)); // the escape the converter must reproduce was exercised
    }

    [Theory]
    [InlineData("")]
    [InlineData("-----BEGIN CERTIFICATE-----\nAB+/=\n-----END CERTIFICATE-----\n")]
    [InlineData("line\r\nwith a carriage return")]
    [InlineData("<script>\"quoted\" & 'single' `back`\\</script>")]
    [InlineData("Zoë, 証明書, \u2028 and \u0001")]
    [InlineData("++++\n\n\n++++")]
    public void Any_string_is_written_as_the_default_encoder_writes_it(string value)
    {
        var now = DateTimeOffset.UnixEpoch;
        var expected = JsonSerializer.Serialize(new PlainResult("01", "a@example.com", "signing", value, value, now, now), Web);
        Assert.Equal(expected, JsonSerializer.Serialize(new EnrollmentResult("01", "a@example.com", "signing", value, value, now, now), Web));
    }

    [Fact]
    public void A_certificate_larger_than_the_stack_buffer_is_written_alike()
    {
        var now = DateTimeOffset.UnixEpoch;
        var large = Pem.Certificate(RandomNumberGenerator.GetBytes(6000));
        var expected = JsonSerializer.Serialize(new PlainResult("01", "a@example.com", "signing", large, large, now, now), Web);
        Assert.Equal(expected, JsonSerializer.Serialize(new EnrollmentResult("01", "a@example.com", "signing", large, large, now, now), Web));
    }
}
