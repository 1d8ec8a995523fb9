using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Renewal;

namespace CertPortal.Tests.Api;

/// <summary>An issuing CA near its end (there is no rollover yet): an enrollment used to spend its token on a certificate cut to
/// the CA's end, which in the last hours lived for minutes, and once the CA had ended ended before it began.</summary>
public sealed class IssuingCaEndTests(ShortCaApp app) : IClassFixture<ShortCaApp>
{
    [Fact]
    public async Task In_the_issuing_cas_last_day_enrollment_is_refused_with_503_the_token_stays_unspent_and_health_says_why()
    {
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        var caEnd = new DateTimeOffset(issuing.NotAfter.ToUniversalTime());

        // /healthz answers 200 throughout (the node still serves CRLs, OCSP and look-ups) and says why it is degraded: from when
        // new certificates (300 days here) would outlive the CA, and again once enrollment is refused.
        Assert.Equal("Healthy", await app.Client.GetStringAsync("/healthz"));
        app.Clock!.SetUtcNow(caEnd.AddDays(-299));
        var health = await app.Client.GetAsync("/healthz");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal($"Degraded\nissuing-ca: the issuing CA ends {caEnd.UtcDateTime:yyyy-MM-dd}: new certificates end with it",
            await health.Content.ReadAsStringAsync());

        // Two days before the end: issued, ending with the CA.
        app.Clock.SetUtcNow(caEnd.AddDays(-2));
        var earlyMailbox = $"early.{Guid.NewGuid().ToString("N")[..6]}@example.com";
        var (early, _) = await app.IssueAsync(earlyMailbox, "signing");
        Assert.Equal(caEnd, early.NotAfter, TimeSpan.FromSeconds(1));

        app.Clock.SetUtcNow(caEnd.AddHours(-12));
        var mailbox = $"late.{Guid.NewGuid().ToString("N")[..6]}@example.com";
        var token = await app.CreateTokenAsync(mailbox, "signing");
        var response = await app.PostEnrollmentAsync(token.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(mailbox));
        var problem = await Http.AssertProblem(response, HttpStatusCode.ServiceUnavailable);
        Assert.Equal("The issuing CA has ended.", problem.GetProperty("title").GetString());
        Assert.Contains(caEnd.UtcDateTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture), problem.GetProperty("detail").GetString());

        // A server-generated key is refused the same way.
        var serverKey = await app.Client.PostAsJsonAsync("/api/v1/enrollments",
            new { token = token.Token, keyAlgorithm = "EC-P256", pkcs12Password = "correct horse battery staple", requestId = Guid.NewGuid().ToString("N") + Guid.NewGuid().ToString("N") });
        await Http.AssertProblem(serverKey, HttpStatusCode.ServiceUnavailable);

        Assert.Contains("\"status\":\"pending\"", await app.Admin.GetStringAsync($"/api/v1/tokens?email={mailbox}"));
        Assert.Equal($"Degraded\nissuing-ca: the issuing CA ends {caEnd.UtcDateTime:yyyy-MM-dd}: enrollment is refused", await app.Client.GetStringAsync("/healthz"));
        Assert.Contains(earlyMailbox, await app.Admin.GetStringAsync($"/api/v1/certificates?email={earlyMailbox}"));
        Assert.DoesNotContain(mailbox, await app.Admin.GetStringAsync($"/api/v1/certificates?email={mailbox}"));
    }
}
