using System.Security.Cryptography.X509Certificates;
using CertPortal.Gal;
using CertPortal.Ocsp;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Ocsp;

public sealed class SteppedClockOcspApp : CertPortalApp
{
    public SteppedClock SteppedClock { get; } = new();

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Ca:IssuingKeyAlgorithm"] = "EC-P256",
        ["Ca:RootKeyAlgorithm"] = "EC-P384",
    };

    protected override void ConfigureServices(IServiceCollection services) => services.AddSingleton<TimeProvider>(SteppedClock);
}

/// <summary>A kept OCSP response dated ahead of a clock that was stepped back is signed again, not served: relying parties
/// refuse a thisUpdate in their future.</summary>
public sealed class OcspClockStepTests(SteppedClockOcspApp app) : IClassFixture<SteppedClockOcspApp>
{
    [Fact]
    public async Task After_the_clock_steps_back_a_kept_response_dated_in_the_future_is_signed_again()
    {
        var cache = app.Service<RecipientCache>();
        await Eventually.TrueAsync(() => cache.Watching, () => "the cache never started watching the change log", TimeSpan.FromSeconds(10));
        var responder = app.Service<OcspResponder>();
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        var (issued, _) = await app.IssueAsync($"clockstep.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing");
        var request = OcspProbe.Request(issuing, issued.SerialNumber);
        await responder.RespondAsync(request, CancellationToken.None);
        var kept = await responder.RespondAsync(request, CancellationToken.None);
        Assert.Same(kept, await responder.RespondAsync(request, CancellationToken.None)); // served from memory

        app.SteppedClock.Offset = TimeSpan.FromHours(-1);
        var after = await responder.RespondAsync(request, CancellationToken.None);
        Assert.NotSame(kept, after);
        var (answer, _) = OcspProbe.Read(after.ToArray());
        Assert.Equal("good", OcspProbe.Describe(answer));
        Assert.True(answer.ThisUpdate.ToUniversalTime() <= app.SteppedClock.GetUtcNow().UtcDateTime,
            $"thisUpdate {answer.ThisUpdate:O} is not ahead of the clock {app.SteppedClock.GetUtcNow():O}");
    }
}
