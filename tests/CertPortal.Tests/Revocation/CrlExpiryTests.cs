using System.Net;
using CertPortal.Tests.Api;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace CertPortal.Tests.Revocation;

/// <summary>One-day certificates, and CRLs refreshed only after three days, so a CRL is signed only when the test revokes.</summary>
public sealed class ShortLivedCrlApp : CertPortalApp
{
    public ShortLivedCrlApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow);

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Issuance:ValidityDays"] = "1",
        ["Crl:RefreshAfter"] = "3.00:00:00",
    };
}

/// <summary>RFC 5280 §3.3: "An entry MUST NOT be removed from the CRL until it appears on one regularly scheduled CRL issued
/// beyond the revoked certificate's validity period." A signature checked later as of a time before the expiry still needs it.</summary>
public sealed class CrlExpiryTests(ShortLivedCrlApp app) : IClassFixture<ShortLivedCrlApp>
{
    [Fact]
    public async Task A_revoked_certificate_stays_on_the_first_crl_signed_after_it_expired_and_leaves_the_next()
    {
        var clock = app.Clock!;
        var tag = Guid.NewGuid().ToString("N")[..8];
        var (expiring, _) = await app.IssueAsync($"crl.expiring.{tag}@example.test", "signing");
        await Revoke(expiring.SerialNumber);
        Assert.Contains(expiring.SerialNumber, (await CrlAsync()).Entries.Keys);

        // A minute past its notAfter, the next CRL (signed for another revocation) is the first issued beyond its validity.
        clock.Advance(expiring.NotAfter - clock.GetUtcNow() + TimeSpan.FromMinutes(1));
        var (second, _) = await app.IssueAsync($"crl.second.{tag}@example.test", "signing");
        await Revoke(second.SerialNumber);
        var first = await CrlAsync();
        Assert.True(first.ThisUpdate > expiring.NotAfter);
        Assert.Contains(expiring.SerialNumber, first.Entries.Keys);
        Assert.Contains(second.SerialNumber, first.Entries.Keys);

        // That CRL listed it after the expiry: the next one no longer does.
        clock.Advance(TimeSpan.FromSeconds(2));
        var (third, _) = await app.IssueAsync($"crl.third.{tag}@example.test", "signing");
        await Revoke(third.SerialNumber);
        var next = await CrlAsync();
        Assert.True(next.Number > first.Number);
        Assert.DoesNotContain(expiring.SerialNumber, next.Entries.Keys);
        Assert.Contains(second.SerialNumber, next.Entries.Keys);
        Assert.Contains(third.SerialNumber, next.Entries.Keys);
    }

    private async Task Revoke(string serial) => await Http.EnsureStatus(await app.RevokeAsync(serial, "keyCompromise"), HttpStatusCode.OK);

    private async Task<ParsedCrl> CrlAsync() => ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing.crl"));
}
