using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Gal;
using CertPortal.Ocsp;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Ocsp;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace CertPortal.Tests.FastPath;

/// <summary>Tests that measure the process's managed heap: they run alone, with no other test allocating meanwhile.</summary>
[CollectionDefinition(nameof(MeasuresTheHeap), DisableParallelization = true)]
public sealed class MeasuresTheHeap;

/// <summary>What the look-up and OCSP caches count against their byte bounds, held against what their entries take: the
/// managed heap's growth (after full collections) while 2,000 mailboxes are looked up and 2,000 responses are signed and
/// kept, with the EC-P256 issuing CA <c>bench/compare.sh --memory</c> runs. Counting too little would let a cache
/// outgrow its bound; counting too much would keep fewer answers than the bound allows. The heap's reading varies from
/// run to run by what else the test process frees or keeps meanwhile, a disturbance of a fixed size: over these 2,000
/// entries it moved the OCSP figure from 1,191 to 1,815 bytes per response (counted 1,588), hence the range 0.75-1.5
/// (0.8-1.3 failed once at 1.33), which a large share of an entry forgotten (a look-up's JSON answer, ~1,300 bytes of
/// 2,768) or counted twice still falls outside.</summary>
[Collection(nameof(MeasuresTheHeap))]
public sealed class CacheByteAccountingTests(CacheByteAccountingTests.EcApp app, ITestOutputHelper output) : IClassFixture<CacheByteAccountingTests.EcApp>
{
    private const int Entries = 2000;
    private const int Warm = 50;
    private const int Attempts = 3;
    private const double Low = 0.75, High = 1.5;

    public sealed class EcApp : CertPortalApp
    {
        protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
        {
            ["Ca:IssuingKeyAlgorithm"] = "EC-P256",
            ["Ca:RootKeyAlgorithm"] = "EC-P384",
            // Nothing expires while the test measures.
            ["Lookup:MaxStaleness"] = "00:30:00",
        };
    }

    [Fact]
    public async Task A_lookup_entry_is_counted_at_what_it_takes()
    {
        var cache = app.Service<RecipientCache>();
        await Eventually.TrueAsync(() => cache.Watching, () => "the cache never started watching the change log", TimeSpan.FromSeconds(10));
        var mailboxes = (await SeedAsync(app, "lookup", Warm + Entries)).Select(s => s.Email).ToList();
        foreach (var mailbox in mailboxes.Take(Warm)) Assert.NotNull(await cache.LookupAsync(mailbox, CertificateUsage.Signing, CancellationToken.None));

        var ratio = await AttemptsAsync(async attempt =>
        {
            var fresh = attempt == 0 ? mailboxes.Skip(Warm).ToList() : (await SeedAsync(app, "lookup", Entries)).Select(s => s.Email).ToList();
            // Each address a new string, as each request's is: the cache keeps it.
            var (measured, counted) = await MeasureAsync(async () =>
            {
                foreach (var mailbox in fresh)
                    Assert.NotNull(await cache.LookupAsync(new string(mailbox.AsSpan()), CertificateUsage.Signing, CancellationToken.None));
            }, () => (cache.CachedBytes, cache.Count), () => cache.DropExpired(DateTimeOffset.MaxValue));
            output.WriteLine($"look-up entry: {counted:N0} bytes counted, {measured:N0} bytes on the heap");
            return counted / measured;
        });
        Assert.InRange(ratio, Low, High);
    }

    [Fact]
    public async Task A_kept_ocsp_response_is_counted_at_what_it_takes()
    {
        var responder = app.Service<OcspResponder>();
        var cache = app.Service<RecipientCache>();
        await Eventually.TrueAsync(() => cache.Watching, () => "the cache never started watching the change log", TimeSpan.FromSeconds(10));
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        var serials = (await SeedAsync(app, "ocsp", Warm + Entries)).Select(s => s.Serial).ToList();
        OcspAnswer? last = null;
        async Task AskAsync(string serial)
        {
            var request = OcspProbe.Request(issuing, serial);
            // Kept from a certificate's second request on (the doorkeeper); the first one's response is garbage by the
            // time the heap is read.
            await responder.RespondAsync(request, CancellationToken.None);
            var answer = await responder.RespondAsync(request, CancellationToken.None, OcspProbe.GetPath(request));
            Assert.Equal("good", OcspProbe.Describe(OcspProbe.Read(answer.ToArray()).Answer));
            // Kept without its own copy of the responder's certificate.
            Assert.NotNull(answer.Certificate);
            last = answer;
        }
        foreach (var serial in serials.Take(Warm)) await AskAsync(serial);

        var ratio = await AttemptsAsync(async attempt =>
        {
            var fresh = attempt == 0 ? serials.Skip(Warm).ToList() : (await SeedAsync(app, "ocsp", Entries)).Select(s => s.Serial).ToList();
            var (measured, counted) = await MeasureAsync(async () =>
            {
                foreach (var serial in fresh) await AskAsync(serial);
            }, () => (responder.CachedBytes, responder.CachedResponses), responder.Clear);
            output.WriteLine($"kept OCSP response: {counted:N0} bytes counted, {measured:N0} bytes on the heap " +
                $"(response {last!.Der.Length} bytes without the responder's certificate of {last.Certificate!.Length})");
            return counted / measured;
        });
        Assert.InRange(ratio, Low, High);
    }

    /// <summary>The ratio of counted to measured bytes per entry, measured again with new entries (up to
    /// <see cref="Attempts"/> times) while it falls outside the range: in the whole suite other test classes' hosts
    /// still free and allocate megabytes while the heap is read (a look-up reading of 1,213 bytes per entry against
    /// 2,768 counted, 2,639 alone). That noise comes and goes; a wrong count is wrong in every attempt.</summary>
    private static async Task<double> AttemptsAsync(Func<int, Task<double>> measure)
    {
        var ratio = double.NaN;
        for (var attempt = 0; attempt < Attempts; attempt++)
        {
            ratio = await measure(attempt);
            if (ratio is >= Low and <= High) break;
        }
        return ratio;
    }

    /// <summary>Bytes per entry, read as the cache empties rather than as it fills: the cache is emptied, filled by
    /// <paramref name="fill"/> (which must add exactly <see cref="Entries"/> entries), the heap read, the cache emptied
    /// again and the heap read again. Between the two readings only the emptying runs, a moment long, so what other test
    /// classes' hosts free or allocate meanwhile hardly counts (read over the whole fill, it once gave -816 bytes per OCSP
    /// response in the full suite).</summary>
    private static async Task<(double Measured, double Counted)> MeasureAsync(Func<Task> fill, Func<(long Bytes, int Count)> cached, Action empty)
    {
        empty();
        await fill();
        var (countedFull, count) = cached();
        Assert.Equal(Entries, count);
        var heapFull = await SettledLiveBytesAsync();
        empty();
        var heapEmpty = await SettledLiveBytesAsync();
        var (countedEmpty, left) = cached();
        Assert.Equal(0, left);
        return ((double)(heapFull - heapEmpty) / Entries, (double)(countedFull - countedEmpty) / Entries);
    }

    /// <summary>The live heap once two readings a moment apart agree: the fixtures of tests that ran before may still be
    /// shutting down, and what they free while the entries are added would hide the entries' bytes.</summary>
    private static async Task<long> SettledLiveBytesAsync()
    {
        var previous = LiveBytes();
        for (var i = 0; i < 50; i++)
        {
            await Task.Delay(200);
            var now = LiveBytes();
            if (Math.Abs(now - previous) < 64 * 1024) return now;
            previous = now;
        }
        return previous;
    }

    private static long LiveBytes()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    /// <summary><paramref name="count"/> certificate rows for new mailboxes: one issued certificate's row copied under new
    /// serials and addresses (what the caches keep does not depend on the DER's contents, only on its size).</summary>
    internal static async Task<List<(string Email, string Serial)>> SeedAsync(CertPortalApp app, string kind, int count)
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        var (issued, _) = await app.IssueAsync($"{kind}.template.{run}@example.test", "signing");
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var template = await db.Certificates.AsNoTracking().SingleAsync(c => c.SerialNumber == issued.SerialNumber);
        var seeded = new List<(string, string)>();
        for (var i = 0; i < count; i++)
        {
            var serial = SerialNumber.ToHex(SerialNumber.New(DateTimeOffset.UtcNow));
            var email = $"{kind}{i}.{run}@example.test";
            db.Certificates.Add(new IssuedCertificate
            {
                SerialNumber = serial, Email = email, DisplayName = template.DisplayName, Profile = template.Profile, KeyAlgorithm = template.KeyAlgorithm,
                SubjectDn = template.SubjectDn, NotBefore = template.NotBefore, NotAfter = template.NotAfter, IssuedAt = template.IssuedAt,
                Der = template.Der, SpkiSha256 = template.SpkiSha256, MailboxValidatedAt = template.MailboxValidatedAt,
            });
            seeded.Add((email, serial));
        }
        await db.SaveChangesAsync();
        return seeded;
    }
}
