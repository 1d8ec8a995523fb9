using System.Security.Cryptography.X509Certificates;
using CertPortal.Gal;
using CertPortal.Ocsp;
using CertPortal.Tests.FastPath;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Ocsp;

/// <summary>An EC-P256 issuing CA, so thousands of responses sign in seconds.</summary>
public sealed class EcOcspApp : CertPortalApp
{
    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Ca:IssuingKeyAlgorithm"] = "EC-P256",
        ["Ca:RootKeyAlgorithm"] = "EC-P384",
    };

    /// <summary>The responder, once it keeps responses (it keeps none until the change log is watched).</summary>
    public async Task<OcspResponder> ResponderAsync()
    {
        var cache = Service<RecipientCache>();
        await Eventually.TrueAsync(() => cache.Watching, () => "the cache never started watching the change log", TimeSpan.FromSeconds(10));
        return Service<OcspResponder>();
    }
}

/// <summary>The doorkeeper in front of the OCSP cache: a response is kept from a certificate's second request on.</summary>
public sealed class OcspAdmissionTests(EcOcspApp app) : IClassFixture<EcOcspApp>
{
    [Fact]
    public async Task The_first_request_is_answered_not_kept_the_second_is_kept_the_third_is_served_from_memory()
    {
        var responder = await app.ResponderAsync();
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        var (issued, _) = await app.IssueAsync($"door.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing");
        var request = OcspProbe.Request(issuing, issued.SerialNumber);
        var before = responder.CachedResponses;

        var first = await responder.RespondAsync(request, CancellationToken.None);
        Assert.Equal("good", OcspProbe.Describe(OcspProbe.Read(first.ToArray()).Answer));
        Assert.Equal(before, responder.CachedResponses);

        var second = await responder.RespondAsync(request, CancellationToken.None);
        Assert.Equal("good", OcspProbe.Describe(OcspProbe.Read(second.ToArray()).Answer));
        Assert.NotSame(first, second);
        Assert.Equal(before + 1, responder.CachedResponses);

        // No new signature: the kept answer itself, the same bytes.
        var third = await responder.RespondAsync(request, CancellationToken.None);
        Assert.Same(second, third);
        Assert.Equal(second.ToArray(), third.ToArray());
        Assert.Equal(before + 1, responder.CachedResponses);
    }

    [Fact]
    public void The_doorkeeper_says_seen_only_for_a_key_marked_before()
    {
        var doorkeeper = new OcspDoorkeeper();
        Assert.False(doorkeeper.SeenBefore("issuing", "sha1", "0A"));
        Assert.True(doorkeeper.SeenBefore("issuing", "sha1", "0A"));
        Assert.False(doorkeeper.SeenBefore("issuing", "sha256", "0A"));
        Assert.False(doorkeeper.SeenBefore("root", "sha1", "0A"));
        Assert.False(doorkeeper.SeenBefore("issuing", "sha1", "0B"));
    }
}

/// <summary>One-off requests (each certificate asked about once, as the mixed memory run asks about each new mailbox)
/// leave the OCSP cache empty; certificates asked about again soon after are kept.</summary>
public sealed class OcspOneOffRequestTests(EcOcspApp app) : IClassFixture<EcOcspApp>
{
    private const int OneOffs = 20_000;

    [Fact]
    public async Task Twenty_thousand_one_off_serials_leave_the_cache_empty()
    {
        var responder = await app.ResponderAsync();
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        var serials = (await CacheByteAccountingTests.SeedAsync(app, "oneoff", OneOffs)).Select(s => s.Serial).ToList();

        foreach (var serial in serials)
        {
            var request = OcspProbe.Request(issuing, serial);
            var answer = await responder.RespondAsync(request, CancellationToken.None, OcspProbe.GetPath(request));
            Assert.NotNull(answer.ETag);
        }
        Assert.Equal(0, responder.CachedResponses);
        Assert.Equal(0, responder.CachedBytes);

        // Asked again soon after, they are kept (a later first request may have taken a mark's slot: nearly all, not all).
        foreach (var serial in serials.TakeLast(100)) await responder.RespondAsync(OcspProbe.Request(issuing, serial), CancellationToken.None);
        Assert.InRange(responder.CachedResponses, 90, 100);
    }
}
