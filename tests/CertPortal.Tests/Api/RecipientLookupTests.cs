using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace CertPortal.Tests.Api;

public class RecipientLookupTests(ClockedApp app) : IClassFixture<ClockedApp>
{
    [Fact]
    public async Task Finds_valid_certificates_for_the_usage_newest_first()
    {
        const string bob = "bob.lookup@example.test";
        var (signing, _) = await app.IssueAsync(bob, "signing");
        var (oldEnc, _) = await app.IssueAsync(bob, "encryption", "RSA-2048");
        app.Clock!.Advance(TimeSpan.FromMinutes(5));
        var (newEnc, _) = await app.IssueAsync(bob, "encryption");
        app.Clock!.Advance(TimeSpan.FromMinutes(5));

        var enc = await Lookup(bob, "encryption");
        Assert.Equal([newEnc.SerialNumber, oldEnc.SerialNumber], enc.Select(c => c.GetProperty("serialNumber").GetString()));
        Assert.All(enc, c => Assert.Equal("encryption", c.GetProperty("usage").GetString()));
        Assert.Contains("BEGIN CERTIFICATE", enc[0].GetProperty("certificatePem").GetString());
        Assert.Equal([signing.SerialNumber], (await Lookup(bob, "signing")).Select(c => c.GetProperty("serialNumber").GetString()));
        // Case of the address does not matter to mail clients.
        Assert.Equal(2, (await Lookup("BOB.Lookup@EXAMPLE.test", "encryption")).Length);

        // Revoked and held certificates disappear from the directory.
        await app.RevokeAsync(newEnc.SerialNumber, "keyCompromise");
        await app.RevokeAsync(signing.SerialNumber, "certificateHold");
        Assert.Equal([oldEnc.SerialNumber], (await Lookup(bob, "encryption")).Select(c => c.GetProperty("serialNumber").GetString()));
        await Http.AssertProblem(await app.Client.GetAsync($"/api/v1/directory/{bob}/certificates?usage=signing"), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Dual_certificates_serve_both_usages_and_expired_ones_vanish()
    {
        var clock = app.Clock!;
        const string carol = "carol.lookup@example.test";
        var (dual, _) = await app.IssueAsync(carol, "dual");
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Single(await Lookup(carol, "signing"));
        Assert.Single(await Lookup(carol, "encryption"));
        clock.Advance(TimeSpan.FromDays(366));
        var gone = await Http.AssertProblem(await app.Client.GetAsync($"/api/v1/directory/{carol}/certificates?usage=encryption"), HttpStatusCode.NotFound);
        Assert.Contains(carol, gone.GetProperty("detail").GetString());
        Assert.Equal("expired", (await app.GetCertificateAsync(dual.SerialNumber)).Status);
    }

    [Fact]
    public async Task Answers_from_memory_are_the_same_for_every_spelling_and_say_nosniff()
    {
        const string erin = "erin.lookup@example.test";
        var (issued, _) = await app.IssueAsync(erin, "encryption");
        // The first look-up normalises and caches; the second, spelled as normalised, is answered without normalising;
        // another spelling of the same mailbox is normalised again and finds the same certificate.
        foreach (var asked in new[] { erin, erin, "erin.lookup@EXAMPLE.Test" })
        {
            var r = await app.Client.GetAsync($"/api/v1/directory/{asked}/certificates?usage=encryption");
            await Http.EnsureStatus(r, HttpStatusCode.OK);
            Assert.Equal("nosniff", r.Headers.GetValues("X-Content-Type-Options").Single());
            Assert.Equal("application/json", r.Content.Headers.ContentType?.MediaType);
            var doc = await r.Content.ReadFromJsonAsync<JsonElement>(Http.Json);
            Assert.Equal(erin, doc.GetProperty("email").GetString());
            Assert.Equal([issued.SerialNumber], doc.GetProperty("certificates").EnumerateArray().Select(c => c.GetProperty("serialNumber").GetString()));
        }
        await Http.AssertProblem(await app.Client.GetAsync($"/api/v1/directory/{erin}/certificates?usage=signing"), HttpStatusCode.NotFound);
        await Http.AssertProblem(await app.Client.GetAsync($"/api/v1/directory/{erin}/certificates?usage=bogus"), HttpStatusCode.BadRequest);
    }

    [Fact]
    public void The_request_log_is_off_unless_configured()
    {
        // While ASP.NET Core's request log category is enabled at any level, every request starts an Activity and a log
        // scope (and the log would print full URLs); Extensions turns it off when the configuration does not name it.
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Microsoft.AspNetCore.Hosting.Diagnostics");
        Assert.False(logger.IsEnabled(LogLevel.Critical));
    }

    [Theory]
    [InlineData("not-an-address", "encryption")]
    [InlineData("dave@example.test", "authentication")]
    public async Task Bad_lookups_get_400(string email, string usage) =>
        await Http.AssertProblem(await app.Client.GetAsync($"/api/v1/directory/{Uri.EscapeDataString(email)}/certificates?usage={usage}"), HttpStatusCode.BadRequest);

    [Fact]
    public async Task Unknown_mailbox_gets_404() =>
        await Http.AssertProblem(await app.Client.GetAsync("/api/v1/directory/nobody@example.test/certificates?usage=encryption"), HttpStatusCode.NotFound);

    private async Task<JsonElement[]> Lookup(string email, string usage)
    {
        var r = await app.Client.GetAsync($"/api/v1/directory/{email}/certificates?usage={usage}");
        await Http.EnsureStatus(r, HttpStatusCode.OK);
        var doc = await r.Content.ReadFromJsonAsync<JsonElement>(Http.Json);
        return doc.GetProperty("certificates").EnumerateArray().ToArray();
    }
}
