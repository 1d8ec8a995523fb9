using System.Security.Cryptography.X509Certificates;
using CertPortal.Data;
using CertPortal.Ocsp;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace CertPortal.Tests.Ocsp;

/// <summary>Time moves on a fake clock: a cached response is signed again after Ocsp:RefreshAfter (long before its
/// nextUpdate), and the delegated signing certificate is replaced once less than Ocsp:SignerRenewBefore is left, in
/// the database too, with every later response signed by the new one.</summary>
public sealed class OcspRenewalTests
{
    private sealed class ClockedOcspApp : CertPortalApp
    {
        public ClockedOcspApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow);

        protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
        {
            ["Ocsp:ResponseLifetime"] = "08:00:00",
            ["Ocsp:RefreshAfter"] = "04:00:00",
            ["Ocsp:SignerValidity"] = "1.00:00:00",
            ["Ocsp:SignerRenewBefore"] = "12:00:00",
        };
    }

    [Fact]
    public async Task Responses_are_resigned_before_nextUpdate_and_the_signer_is_renewed_before_it_expires()
    {
        var app = new ClockedOcspApp();
        await app.InitializeAsync();
        try
        {
            await RenewAsync(app);
        }
        finally
        {
            await app.DisposeAsync();
        }
    }

    private static async Task RenewAsync(ClockedOcspApp app)
    {
        var clock = app.Clock!;
        var (issued, _) = await app.IssueAsync("renewal@example.test", "signing");
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        var path = OcspProbe.GetPath(OcspProbe.Request(issuing, issued.SerialNumber));
        var responder = app.Service<OcspResponder>();

        // Asked twice: a response is kept from a certificate's second request on, and only kept ones are refreshed.
        await app.Client.GetByteArrayAsync(path);
        var (first, firstBasic) = OcspProbe.Read(await app.Client.GetByteArrayAsync(path));
        var firstSigner = firstBasic.GetCerts()[0];
        Assert.Equal(first.ThisUpdate, OcspProbe.Read(await app.Client.GetByteArrayAsync(path)).Answer.ThisUpdate); // cached

        // Past RefreshAfter, well before nextUpdate: the background pass signs it again with the same signer.
        clock.Advance(TimeSpan.FromHours(5));
        await responder.CheckAsync(CancellationToken.None);
        var (refreshed, refreshedBasic) = OcspProbe.Read(await app.Client.GetByteArrayAsync(path));
        Assert.InRange((refreshed.ThisUpdate - first.ThisUpdate).TotalHours, 4.99, 5.01);
        Assert.Equal(firstSigner.GetEncoded(), refreshedBasic.GetCerts()[0].GetEncoded());

        // 13 h after creation the 1-day signer has 11 h left, less than SignerRenewBefore (12 h): replaced.
        clock.Advance(TimeSpan.FromHours(8));
        await responder.CheckAsync(CancellationToken.None);
        var (renewed, renewedBasic) = OcspProbe.Read(await app.Client.GetByteArrayAsync(path));
        var newSigner = renewedBasic.GetCerts()[0];
        Assert.NotEqual(firstSigner.SerialNumber, newSigner.SerialNumber);
        Assert.Equal("good", OcspProbe.Describe(renewed));
        Assert.InRange((newSigner.NotAfter - clock.GetUtcNow().UtcDateTime).TotalHours, 23.9, 24.1);
        using var scope = app.Services.CreateScope();
        var stored = await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().SharedSecrets.AsNoTracking()
            .SingleAsync(s => s.Name == "ocsp:issuing");
        var text = System.Text.Encoding.UTF8.GetString(stored.Value);
        Assert.Equal(newSigner.GetEncoded(), X509Certificate2.CreateFromPem(text).RawData);
        // The key is sealed, never stored as plain PKCS#8.
        Assert.DoesNotContain("PRIVATE KEY-----", text.Replace("CERTPORTAL SEALED PRIVATE KEY", ""));
    }

    private sealed class ShortCaOcspApp : CertPortalApp
    {
        public ShortCaOcspApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow);

        protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
        {
            ["Ca:IssuingValidityYears"] = "1",
        };
    }

    /// <summary>In the issuing CA's last Ocsp:SignerRenewBefore (10 days) a new signer would end with the CA, like the one
    /// it replaces: it is renewed once, to end with the CA, then kept; before, every check (each minute) made a new key
    /// and signed every cached response again.</summary>
    [Fact]
    public async Task In_the_CAs_last_days_the_signer_ends_with_the_CA_and_is_not_renewed_at_every_check()
    {
        var app = new ShortCaOcspApp();
        await app.InitializeAsync();
        try
        {
            var clock = app.Clock!;
            using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
            var caEnd = new DateTimeOffset(issuing.NotAfter.ToUniversalTime());
            clock.SetUtcNow(caEnd - TimeSpan.FromDays(5));
            var responder = app.Service<OcspResponder>();
            await responder.CheckAsync(CancellationToken.None);

            var (issued, _) = await app.IssueAsync("lastdays@example.test", "signing");
            var path = OcspProbe.GetPath(OcspProbe.Request(issuing, issued.SerialNumber));
            await app.Client.GetByteArrayAsync(path); // kept from the second request on
            var (first, firstBasic) = OcspProbe.Read(await app.Client.GetByteArrayAsync(path));
            var signer = firstBasic.GetCerts()[0];
            Assert.Equal("good", OcspProbe.Describe(first));
            Assert.Equal(caEnd, new DateTimeOffset(signer.NotAfter.ToUniversalTime()));

            for (var i = 0; i < 3; i++)
            {
                clock.Advance(TimeSpan.FromMinutes(1));
                await responder.CheckAsync(CancellationToken.None);
            }
            var (later, laterBasic) = OcspProbe.Read(await app.Client.GetByteArrayAsync(path));
            Assert.Equal(signer.SerialNumber, laterBasic.GetCerts()[0].SerialNumber);
            Assert.Equal(first.ThisUpdate, later.ThisUpdate); // the cached response was not signed again
        }
        finally
        {
            await app.DisposeAsync();
        }
    }
}
