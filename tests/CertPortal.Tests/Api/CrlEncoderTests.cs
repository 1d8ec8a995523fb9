using System.Numerics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;
using CertPortal.Revocation;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Api;

/// <summary>CrlEncoder must write exactly what .NET's CertificateRevocationListBuilder writes. With an RSA
/// PKCS#1 key the signature is deterministic, so the two DER encodings must be byte-identical.</summary>
public sealed class CrlEncoderTests
{
    private static CertificateAuthority NewCa(AsymmetricAlgorithm key)
    {
        var req = key is RSA rsa
            ? new CertificateRequest("CN=Encoder Test CA, O=CertPortal Tests", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)
            : new CertificateRequest("CN=Encoder Test CA, O=CertPortal Tests", (ECDsa)key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        var cert = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(30));
        return new CertificateAuthority("issuing", X509CertificateLoader.LoadCertificate(cert.RawData), key);
    }

    public static TheoryData<int, int> Cases => new() { { 0, 1 }, { 1, 2 }, { 300, 4242 }, { 5000, long.MaxValue > 0 ? 987654321 : 0 } };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Encoding_is_byte_identical_to_dotnets_builder(int count, int crlNumber)
    {
        using var ca = NewCa(RSA.Create(2048));
        var thisUpdate = new DateTimeOffset(2026, 11, 25, 10, 11, 12, 345, TimeSpan.Zero);
        var nextUpdate = thisUpdate.AddDays(7);
        var entries = Entries(count);
        var builder = new CertificateRevocationListBuilder();
        foreach (var e in entries) builder.AddEntry(e.SerialNumber, e.RevokedAt, e.Reason);
        var expected = builder.Build(ca.Certificate, new BigInteger(crlNumber), nextUpdate, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1, thisUpdate);

        Assert.Equal(Convert.ToHexString(expected), Convert.ToHexString(CrlEncoder.Build(ca, crlNumber, thisUpdate, nextUpdate, entries)));
    }

    [Fact]
    public void Times_from_2050_are_generalized_time_and_openssl_verifies_an_ecdsa_signed_crl()
    {
        Tool.Require("openssl", "openssl");
        using var ca = NewCa(ECDsa.Create(ECCurve.NamedCurves.nistP256));
        var thisUpdate = new DateTimeOffset(2049, 12, 31, 23, 0, 0, TimeSpan.Zero);
        var entries = Entries(3);
        var der = CrlEncoder.Build(ca, 7, thisUpdate, thisUpdate.AddDays(2), entries);

        var parsed = ParsedCrl.Parse(der);
        Assert.Equal(7, parsed.Number);
        Assert.Equal(thisUpdate.AddDays(2), parsed.NextUpdate);
        // ParsedCrl names serials without the sign byte.
        Assert.Equal(entries.Select(e => Convert.ToHexString(e.SerialNumber.AsSpan(e.SerialNumber[0] == 0 ? 1 : 0))).Order(), parsed.Entries.Keys.Order());
        using var dir = new ToolDir("crl-encoder");
        var text = Tool.Run("openssl", ["crl", "-inform", "DER", "-in", dir.Write("c.crl", der), "-noout", "-text",
            "-CAfile", dir.Write("ca.pem", ca.Certificate.ExportCertificatePem())]).EnsureSuccess();
        Assert.Contains("verify OK", text.Output);
        Assert.Contains("Next Update: Jan  2 23:00:00 2050 GMT", text.Stdout);
    }

    [Fact]
    public void Entries_read_back_in_order_with_their_reasons_from_the_der_in_place()
    {
        using var ca = NewCa(ECDsa.Create(ECCurve.NamedCurves.nistP256));
        var entries = Entries(600);
        var der = CrlEncoder.Build(ca, 9, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddDays(7), entries);

        var read = CrlEncoder.ReadEntries(der).Select(e => (Convert.ToHexString(e.SerialNumber.Span), e.Reason)).ToList();
        Assert.Equal(entries.Select(e => (Convert.ToHexString(e.SerialNumber), e.Reason)), read);
        // The revocation dates as written (a delta compares them with its base's), and no other second.
        Assert.All(CrlEncoder.ReadEntries(der).Zip(entries), e => Assert.True(CrlEncoder.IsTime(e.First.RevocationDate.Span, e.Second.RevokedAt)));
        Assert.All(CrlEncoder.ReadEntries(der).Zip(entries), e => Assert.False(CrlEncoder.IsTime(e.First.RevocationDate.Span, e.Second.RevokedAt.AddSeconds(1))));
        Assert.Empty(CrlEncoder.ReadEntries(CrlEncoder.Build(ca, 10, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddDays(7), [])));

        // The in-place pass finds the same entries, each offered once, reading the reasons of those it is asked for.
        var offered = new List<string>();
        var found = new List<(string, X509RevocationReason?)>();
        CrlEncoder.FindEntries(der, serial =>
        {
            offered.Add(Convert.ToHexString(serial));
            return offered.Count % 7 == 0;
        }, (serial, revocationDate, reason) =>
        {
            found.Add((Convert.ToHexString(serial), reason));
            Assert.True(CrlEncoder.IsTime(revocationDate, entries[offered.Count - 1].RevokedAt));
        });
        Assert.Equal(read.Select(e => e.Item1), offered);
        Assert.Equal(read.Where((_, i) => (i + 1) % 7 == 0), found);
        Assert.Contains(found, e => e.Item2 is null);
        Assert.Contains(found, e => e.Item2 is not null);
        CrlEncoder.FindEntries(CrlEncoder.Build(ca, 10, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddDays(7), []),
            _ => throw new InvalidOperationException("an empty CRL has no entry to offer"), (_, _, _) => { });
    }

    [Fact]
    public void A_serial_that_is_not_a_minimal_integer_is_refused()
    {
        var entries = new CrlEntries();
        Assert.Throws<ArgumentException>(() => entries.Add([0x00, 0x12], DateTimeOffset.UtcNow, null));
        Assert.Throws<ArgumentException>(() => entries.Add([], DateTimeOffset.UtcNow, null));
        Assert.Equal(0, entries.Count);
    }

    /// <summary>Serials with and without a leading zero byte (high bit set), every reason kind and none, UTCTime and GeneralizedTime.</summary>
    private static List<CrlEntry> Entries(int count)
    {
        var reasons = new X509RevocationReason?[] { null, X509RevocationReason.KeyCompromise, X509RevocationReason.CertificateHold,
            X509RevocationReason.Superseded, X509RevocationReason.AffiliationChanged, X509RevocationReason.CessationOfOperation };
        var list = new List<CrlEntry>();
        var rng = new Random(count);
        for (var i = 0; i < count; i++)
        {
            var serial = new byte[16];
            rng.NextBytes(serial);
            serial[0] = (byte)(serial[0] | 0x01);
            if (i % 2 == 0) serial = [0x00, (byte)(serial[0] | 0x80), .. serial[1..]];
            else serial[0] &= 0x7F;
            // Every seventh from 2050 on: GeneralizedTime in the entry (RFC 5280 §5.1.2.6).
            var revokedAt = new DateTimeOffset(i % 7 == 3 ? 2050 : 2026, 1, 1, 0, 0, 0, TimeSpan.Zero).AddSeconds(i * 3607.25);
            list.Add(new CrlEntry(serial, revokedAt, reasons[i % reasons.Length]));
        }
        return list;
    }
}
