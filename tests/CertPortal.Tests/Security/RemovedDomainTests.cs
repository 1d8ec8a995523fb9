using System.Net;
using System.Net.Http.Json;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Renewal;

namespace CertPortal.Tests.Security;

/// <summary>A service whose <c>AllowedDomains</c> the test changes between starts, as an operator would after giving up a
/// domain. ECDSA issuing key: token enrollments take the claim path (the token spent in the group writer); renewals take the
/// read-first path that RSA issuers use for enrollments too.</summary>
public sealed class ShrinkingDomainsApp : CertPortalApp
{
    public List<string> Domains { get; } = ["kept.example", "dropped.example"];

    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = new Dictionary<string, string?>
            {
                ["Ca:IssuingKeyAlgorithm"] = "EC-P256",
                // Always open: the certificates are new.
                ["Renewal:OpensBeforeExpiry"] = "400.00:00:00",
            };
            for (var i = 0; i < Domains.Count; i++) settings[$"AllowedDomains:{i}"] = Domains[i];
            return settings;
        }
    }
}

/// <summary><c>AllowedDomains</c> names the mail domains the CA issues for: a domain taken off it gets no more certificates,
/// neither through a token created while it was allowed nor through a self-service renewal of a certificate issued then.</summary>
public sealed class RemovedDomainTests(ShrinkingDomainsApp app) : IClassFixture<ShrinkingDomainsApp>
{
    [Fact]
    public async Task A_domain_taken_off_the_allowed_list_gets_no_certificate_from_an_earlier_token_or_a_renewal()
    {
        Tool.Require("openssl", "openssl");
        var run = Guid.NewGuid().ToString("N")[..6];
        var pending = await app.CreateTokenAsync($"pending.{run}@dropped.example", "signing");
        var (held, heldKey) = await app.IssueAsync($"holder.{run}@dropped.example", "signing");
        var kept = await app.CreateTokenAsync($"kept.{run}@kept.example", "signing");

        await app.StopAsync();
        app.Domains.Remove("dropped.example");
        app.Start();

        var enrolled = await app.PostEnrollmentAsync(pending.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(pending.Email));
        var refused = await Http.AssertProblem(enrolled, HttpStatusCode.Forbidden);
        Assert.Equal("Domain not allowed.", refused.GetProperty("title").GetString());
        // Refused, not spent: were the domain allowed again, the link would still work.
        Assert.Contains("\"status\":\"pending\"", await app.Admin.GetStringAsync($"/api/v1/tokens?email={pending.Email}"));

        using var dir = new ToolDir("removed-domain");
        var cms = RenewalRequests.Sign(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem($"holder.{run}@dropped.example"), held.CertificatePem, heldKey);
        var renewed = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms });
        Assert.Equal("Domain not allowed.", (await Http.AssertProblem(renewed, HttpStatusCode.Forbidden)).GetProperty("title").GetString());

        // The domain still allowed issues as before.
        Assert.Equal(HttpStatusCode.Created,
            (await app.PostEnrollmentAsync(kept.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(kept.Email))).StatusCode);
    }
}
