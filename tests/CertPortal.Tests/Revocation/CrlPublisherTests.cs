using System.Net;
using System.Net.Http.Headers;
using CertPortal.Data;
using CertPortal.Tests.Api;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Revocation;

/// <summary>The service as deployed: the CRL publisher coalesces revocations for Crl:PublishDelay.</summary>
public sealed class CoalescingApp : CertPortalApp
{
    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?> { ["Crl:PublishDelay"] = "00:00:05" };
}

public sealed class CrlPublisherTests(CoalescingApp app) : IClassFixture<CoalescingApp>
{
    [Fact]
    public async Task Revocations_return_when_durable_and_a_burst_appears_in_one_crl_after_the_publish_delay()
    {
        var serials = new List<string>();
        for (var i = 0; i < 8; i++) serials.Add((await app.IssueAsync($"burst{i}@example.test", "signing")).Cert.SerialNumber);
        var before = ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing.crl"));

        var revoked = await Task.WhenAll(serials.Select(s => app.RevokeAsync(s, "keyCompromise")));
        Assert.All(revoked, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.All(serials, s => Assert.Equal("revoked", app.GetCertificateAsync(s).Result.Status));

        var deadline = DateTime.UtcNow.AddSeconds(30);
        ParsedCrl after;
        do
        {
            await Task.Delay(250);
            after = ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing.crl"));
        }
        while (!serials.All(after.Entries.ContainsKey) && DateTime.UtcNow < deadline);
        Assert.All(serials, s => Assert.True(after.Entries.ContainsKey(s), $"{s} is in the CRL"));
        // Coalesced: fewer CRLs than revocations (one when the burst fits in the delay; a loaded machine may split it).
        Assert.InRange(after.Number - before.Number, 1, serials.Count / 2);
        Assert.True(after.ThisUpdate > before.ThisUpdate);

        // Storage grows with revocations, not with CRL copies: one stored CRL per CA, no change left owed.
        using var scope = app.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.Equal(1, await db.Crls.CountAsync(c => c.Authority == "issuing"));
        Assert.Equal(1, await db.Crls.CountAsync(c => c.Authority == "root"));
        Assert.Equal(0, await db.CrlChanges.CountAsync());
    }

    [Fact]
    public async Task Crls_are_served_with_etag_and_last_modified_answer_conditional_requests_with_304_and_head_without_a_body()
    {
        foreach (var path in new[] { "/crl/issuing.crl", "/crl/root.crl" })
        {
            var full = await app.Client.GetAsync(path);
            Assert.Equal(HttpStatusCode.OK, full.StatusCode);
            var etag = full.Headers.ETag;
            var lastModified = full.Content.Headers.LastModified;
            Assert.NotNull(etag);
            Assert.NotNull(lastModified);
            // A shared cache may keep it but must revalidate before each use (else it may reuse it unasked for a tenth of its age).
            Assert.True(full.Headers.CacheControl is { Public: true, NoCache: true }, $"Cache-Control: {full.Headers.CacheControl}");
            var body = await full.Content.ReadAsByteArrayAsync();

            using var byTag = new HttpRequestMessage(HttpMethod.Get, path);
            byTag.Headers.IfNoneMatch.Add(etag);
            Assert.Equal(HttpStatusCode.NotModified, (await app.Client.SendAsync(byTag)).StatusCode);

            using var byDate = new HttpRequestMessage(HttpMethod.Get, path);
            byDate.Headers.IfModifiedSince = lastModified;
            Assert.Equal(HttpStatusCode.NotModified, (await app.Client.SendAsync(byDate)).StatusCode);

            using var stale = new HttpRequestMessage(HttpMethod.Get, path);
            stale.Headers.IfNoneMatch.Add(new EntityTagHeaderValue("\"issuing-0\""));
            Assert.Equal(body, await (await app.Client.SendAsync(stale)).Content.ReadAsByteArrayAsync());

            using var head = new HttpRequestMessage(HttpMethod.Head, path);
            var headResponse = await app.Client.SendAsync(head);
            Assert.Equal(HttpStatusCode.OK, headResponse.StatusCode);
            Assert.Equal(etag, headResponse.Headers.ETag);
            Assert.Equal(body.Length, headResponse.Content.Headers.ContentLength);
            Assert.Empty(await headResponse.Content.ReadAsByteArrayAsync());
        }
    }
}

/// <summary>With Crl:PublishDelay 0 every revocation signs a CRL before it returns: a quick series must not push
/// thisUpdate past the clock, or OpenSSL and NSS call the CRL "not yet valid" and ignore the revocations in it;
/// and thisUpdate still increases, since clients revalidate by Last-Modified.</summary>
public sealed class SynchronousCrlTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Fact]
    public async Task A_quick_series_of_revocations_never_signs_a_crl_dated_in_the_future()
    {
        var serials = new List<string>();
        for (var i = 0; i < 6; i++) serials.Add((await app.IssueAsync($"series{i}@example.test", "signing")).Cert.SerialNumber);

        long previous = 0;
        var previousThisUpdate = DateTimeOffset.MinValue;
        foreach (var serial in serials)
        {
            Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(serial, "keyCompromise")).StatusCode);
            var crl = ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing.crl"));
            Assert.True(crl.ThisUpdate <= DateTimeOffset.UtcNow, $"CRL {crl.Number} thisUpdate {crl.ThisUpdate:O} is after now");
            Assert.True(crl.Number > previous, "CRL numbers increase");
            Assert.True(crl.ThisUpdate > previousThisUpdate, "thisUpdate increases (Last-Modified revalidation)");
            Assert.True(crl.Entries.ContainsKey(serial), $"{serial} is in the CRL signed before the revocation returned");
            previous = crl.Number;
            previousThisUpdate = crl.ThisUpdate;
        }
    }
}
