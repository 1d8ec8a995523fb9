using System.Net;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Ocsp;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Ocsp;

/// <summary>A responder whose cache holds ten signed responses.</summary>
public sealed class SmallOcspCacheApp : CertPortalApp
{
    public const int Bound = 10;

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Ocsp:MaxCachedResponses"] = Bound.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}

/// <summary>More certificates asked about than the cache holds: the cache stays within its bound (memory does not grow
/// with the number of certificates relying parties ask about), and every answer is still right, including for
/// certificates revoked while their response was cached or after it was evicted.</summary>
public sealed class OcspCacheBoundTests(SmallOcspCacheApp app) : IClassFixture<SmallOcspCacheApp>
{
    [Fact]
    public async Task Three_times_the_cache_size_asked_twice_stays_bounded_and_answers_right()
    {
        var responder = app.Services.GetRequiredService<OcspResponder>();
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        var run = Guid.NewGuid().ToString("N")[..6];
        var serials = new List<string>();
        for (var i = 0; i < 3 * SmallOcspCacheApp.Bound; i++)
            serials.Add((await app.IssueAsync($"bound{i}.{run}@example.test", "signing", "EC-P256")).Cert.SerialNumber);

        async Task<string> StatusAsync(string serial)
        {
            var (answer, _) = OcspProbe.Read(await app.Client.GetByteArrayAsync(OcspProbe.GetPath(OcspProbe.Request(issuing, serial))));
            Assert.InRange(responder.CachedResponses, 0, SmallOcspCacheApp.Bound);
            return OcspProbe.Describe(answer);
        }

        // Each asked twice: a response is kept from a certificate's second request on.
        foreach (var serial in serials)
            for (var i = 0; i < 2; i++) Assert.Equal("good", await StatusAsync(serial));
        Assert.True(responder.CachedResponses > 0, "nothing was cached");

        // Revoke the most recently asked (likely cached) and the first asked (evicted by now); ask about all again.
        var revoked = serials.TakeLast(3).Concat(serials.Take(3)).ToHashSet();
        foreach (var serial in revoked) await Http.EnsureStatus(await app.RevokeAsync(serial, "keyCompromise"), HttpStatusCode.OK);
        foreach (var serial in serials)
            Assert.Equal(revoked.Contains(serial) ? "revoked:1" : "good", await StatusAsync(serial));
    }
}
