using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using CertPortal.Gal;
using CertPortal.Ocsp;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Ocsp;

namespace CertPortal.Tests.FastPath;

/// <summary>The look-up and OCSP caches bounded by bytes, not by entries: a few kilobytes hold three or four
/// mailboxes' answers and signed responses, while the entry bounds (100,000 by default) would allow all.</summary>
public sealed class CacheByteBoundTests(CacheByteBoundTests.TinyCachesApp app) : IClassFixture<CacheByteBoundTests.TinyCachesApp>
{
    public const long LookupBytes = 8 * 1024;
    public const long OcspBytes = 6 * 1024;

    public sealed class TinyCachesApp : CertPortalApp
    {
        protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
        {
            ["Lookup:MaxCacheBytes"] = LookupBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Ocsp:MaxCacheBytes"] = OcspBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
    }

    [Fact]
    public async Task Lookups_of_more_mailboxes_than_the_bytes_hold_stay_within_them_and_answer_right()
    {
        var cache = app.Service<RecipientCache>();
        await Eventually.TrueAsync(() => cache.Watching, () => "the cache never started watching the change log", TimeSpan.FromSeconds(10));
        var run = Guid.NewGuid().ToString("N")[..6];
        var issued = new List<(string Email, string Serial)>();
        for (var i = 0; i < 12; i++)
        {
            var email = $"bytes{i}.{run}@example.test";
            issued.Add((email, (await app.IssueAsync(email, "dual")).Cert.SerialNumber));
        }

        async Task<List<string>> SerialsAsync(string email, string usage)
        {
            var response = await app.Client.GetAsync($"/api/v1/directory/{email}/certificates?usage={usage}");
            var serials = new List<string>();
            if (response.StatusCode == HttpStatusCode.OK)
                foreach (var c in (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("certificates").EnumerateArray())
                    serials.Add(c.GetProperty("serialNumber").GetString()!);
            else
                await Http.AssertProblem(response, HttpStatusCode.NotFound);
            // Checked after every answer: the bound holds at all times, not only once things settle.
            Assert.InRange(cache.CachedBytes, 0, LookupBytes);
            Assert.Equal(cache.RecountBytes(), cache.CachedBytes);
            return serials;
        }

        // Two usages and two spellings per mailbox: each answer rendered is counted with its entry.
        for (var round = 0; round < 2; round++)
            foreach (var (email, serial) in issued)
            {
                Assert.Equal(new[] { serial }, await SerialsAsync(email, "signing"));
                Assert.Equal(new[] { serial }, await SerialsAsync(email.ToUpperInvariant(), "encryption"));
            }
        Assert.InRange(cache.Count, 1, issued.Count - 1);

        // Changes drop entries (and their bytes) whether they are cached or were evicted.
        foreach (var (_, serial) in issued.Take(3).Concat(issued.TakeLast(3)))
            await Http.EnsureStatus(await app.RevokeAsync(serial, "keyCompromise"), HttpStatusCode.OK);
        for (var i = 0; i < issued.Count; i++)
            Assert.Equal(i is < 3 or >= 9 ? Array.Empty<string>() : new[] { issued[i].Serial }, await SerialsAsync(issued[i].Email, "signing"));
    }

    [Fact]
    public async Task The_caches_endpoint_reports_what_each_cache_holds_against_its_bounds()
    {
        var cache = app.Service<RecipientCache>();
        var responder = app.Service<OcspResponder>();
        await Eventually.TrueAsync(() => cache.Watching, () => "the cache never started watching the change log", TimeSpan.FromSeconds(10));
        var email = $"reported.{Guid.NewGuid():N}@example.test";
        await app.IssueAsync(email, "signing");
        await Http.EnsureStatus(await app.Client.GetAsync($"/api/v1/directory/{email}/certificates?usage=signing"), HttpStatusCode.OK);

        await Http.AssertProblem(await app.Client.GetAsync("/api/v1/caches"), HttpStatusCode.Unauthorized);
        using var response = await app.Admin.GetAsync("/api/v1/caches");
        await Http.EnsureStatus(response, HttpStatusCode.OK);
        var report = await response.Content.ReadFromJsonAsync<JsonElement>();
        var lookup = report.GetProperty("lookup");
        Assert.Equal(cache.Count, lookup.GetProperty("entries").GetInt32());
        Assert.InRange(lookup.GetProperty("entries").GetInt32(), 1, int.MaxValue);
        Assert.Equal(cache.CachedBytes, lookup.GetProperty("bytes").GetInt64());
        Assert.InRange(lookup.GetProperty("bytes").GetInt64(), 1, LookupBytes);
        Assert.Equal(LookupBytes, lookup.GetProperty("maxBytes").GetInt64());
        Assert.Equal(100_000, lookup.GetProperty("maxEntries").GetInt32());
        Assert.Equal(cache.Loads, lookup.GetProperty("databaseReads").GetInt64());
        var ocsp = report.GetProperty("ocsp");
        Assert.Equal(responder.CachedResponses, ocsp.GetProperty("entries").GetInt32());
        Assert.Equal(responder.CachedBytes, ocsp.GetProperty("bytes").GetInt64());
        Assert.Equal(OcspBytes, ocsp.GetProperty("maxBytes").GetInt64());
    }

    [Fact]
    public async Task Ocsp_responses_for_more_certificates_than_the_bytes_hold_stay_within_them_and_answer_right()
    {
        var responder = app.Service<OcspResponder>();
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        var run = Guid.NewGuid().ToString("N")[..6];
        var serials = new List<string>();
        for (var i = 0; i < 12; i++)
            serials.Add((await app.IssueAsync($"ocspbytes{i}.{run}@example.test", "signing")).Cert.SerialNumber);

        async Task<string> StatusAsync(string serial)
        {
            var (answer, _) = OcspProbe.Read(await app.Client.GetByteArrayAsync(OcspProbe.GetPath(OcspProbe.Request(issuing, serial))));
            Assert.InRange(responder.CachedBytes, 0, OcspBytes);
            return OcspProbe.Describe(answer);
        }

        // Each asked twice: a response is kept from a certificate's second request on.
        foreach (var serial in serials)
            for (var i = 0; i < 2; i++) Assert.Equal("good", await StatusAsync(serial));
        Assert.InRange(responder.CachedResponses, 1, serials.Count - 1);
        var revoked = serials.TakeLast(2).Concat(serials.Take(2)).ToHashSet();
        foreach (var serial in revoked) await Http.EnsureStatus(await app.RevokeAsync(serial, "keyCompromise"), HttpStatusCode.OK);
        foreach (var serial in serials) Assert.Equal(revoked.Contains(serial) ? "revoked:1" : "good", await StatusAsync(serial));
    }
}
