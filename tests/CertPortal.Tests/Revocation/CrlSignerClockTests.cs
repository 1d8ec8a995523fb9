using System.Net;
using CertPortal.Revocation;
using CertPortal.Tests.Api;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace CertPortal.Tests.Revocation;

/// <summary>The signer's wait for the second after the previous CRL, on the real clock: a CRL signed right after it must
/// get a later thisUpdate (seen as two CRLs with one thisUpdate in the three-node cluster test).</summary>
public sealed class CrlSignerClockTests
{
    [Fact]
    public async Task Waiting_for_the_second_after_the_previous_crl_ends_in_a_later_second()
    {
        for (var i = 0; i < 8; i++)
        {
            var previous = TimeProvider.System.GetUtcNow();
            Assert.True(await CrlSigner.WaitForSecondAfterAsync(TimeProvider.System, previous, CancellationToken.None));
            var after = TimeProvider.System.GetUtcNow();
            Assert.True(CrlSigner.WholeSeconds(after) > CrlSigner.WholeSeconds(previous),
                $"the wait for the second after {previous:HH:mm:ss.fffffff} ended at {after:HH:mm:ss.fffffff}");
        }
    }
}

/// <summary>Delta CRLs on SQLite with a complete CRL that falls due in the middle of a second (the base interval half a second
/// past the hour), and a clock the test moves. On a real clock with a whole-second interval the same happens when the
/// publisher decides on a delta just before the hour and reads the clock for signing just after it.</summary>
public sealed class MidSecondDeltaBaseApp : CertPortalApp
{
    public MidSecondDeltaBaseApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow);

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?> { ["Crl:DeltaBaseInterval"] = "01:00:00.5" };
}

/// <summary>A new complete CRL is followed by its delta in the same transaction: that delta is the next at the delta URL, so its
/// thisUpdate (Last-Modified) must come after the previous delta's, signed in the same second before the complete CRL fell due.</summary>
public sealed class DeltaAfterCompleteCrlTests(MidSecondDeltaBaseApp app) : IClassFixture<MidSecondDeltaBaseApp>
{
    [Fact]
    public async Task The_delta_signed_with_a_new_complete_crl_is_dated_after_a_delta_signed_earlier_in_that_second()
    {
        var (a, _) = await app.IssueAsync("mid.a@example.test", "signing");
        var (b, _) = await app.IssueAsync("mid.b@example.test", "signing");
        var complete = ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing.crl"));

        // 0.2 s into the second at which the complete CRL is an hour old: a revocation goes into a delta.
        var second = complete.ThisUpdate + TimeSpan.FromHours(1);
        app.Clock!.SetUtcNow(second + TimeSpan.FromMilliseconds(200));
        await Http.EnsureStatus(await app.RevokeAsync(a.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
        var delta = ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing-delta.crl"));
        Assert.Contains(a.SerialNumber, delta.Entries.Keys);
        Assert.Equal(second, delta.ThisUpdate);

        // 0.7 s into it the base interval has passed: the next revocation makes a new complete CRL and its (empty) delta.
        app.Clock.Advance(TimeSpan.FromMilliseconds(500));
        var revoking = app.RevokeAsync(b.SerialNumber, "keyCompromise");
        // The signer waits in real time for the clock to pass the previous CRL's second, and gives a frozen clock up after
        // 1.2 s: still waiting after half a second (the revocation takes some 40-160 ms without a wait), it gets the next second.
        if (await Task.WhenAny(revoking, Task.Delay(TimeSpan.FromMilliseconds(500))) != revoking) app.Clock.Advance(TimeSpan.FromSeconds(1));
        await Http.EnsureStatus(await revoking, HttpStatusCode.OK);
        var newComplete = ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing.crl"));
        var newDelta = ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing-delta.crl"));
        Assert.Contains(b.SerialNumber, newComplete.Entries.Keys);
        Assert.Empty(newDelta.Entries);
        Assert.True(newDelta.Number > newComplete.Number && newComplete.Number > delta.Number);
        Assert.True(newDelta.ThisUpdate > delta.ThisUpdate,
            $"delta CRL {newDelta.Number} has thisUpdate {newDelta.ThisUpdate:O}, as the delta CRL {delta.Number} before it");
    }
}
