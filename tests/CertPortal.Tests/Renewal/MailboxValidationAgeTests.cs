using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace CertPortal.Tests.Renewal;

/// <summary>Certificates that live 30 days and may be renewed at once, and a mailbox validation that may be relied on for 45
/// days: a chain of renewals runs out 45 days after the invitation that validated the mailbox.</summary>
public sealed class ValidationAgeApp : CertPortalApp
{
    public ValidationAgeApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow);

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Issuance:ValidityDays"] = "30",
        ["Renewal:OpensBeforeExpiry"] = "400.00:00:00",
        ["Renewal:MailboxValidationReuse"] = "45.00:00:00",
    };
}

public sealed class MailboxValidationAgeTests(ValidationAgeApp app) : IClassFixture<ValidationAgeApp>
{
    [Fact]
    public async Task A_chain_of_renewals_ends_when_the_mailbox_validation_is_older_than_its_reuse_period()
    {
        var mailbox = $"vera.{Guid.NewGuid().ToString("N")[..6]}@example.com";
        var validatedAt = app.Clock!.GetUtcNow();
        var (first, firstKey) = await app.IssueAsync(mailbox, "signing");

        // Renewable at once (the window is longer than the life), and each renewal renewable at once again: the validation's age,
        // carried unchanged down the chain, is what ends it.
        var (second, secondKey) = await RenewAsync(mailbox, first, firstKey);
        app.Clock.Advance(TimeSpan.FromDays(20));
        var (third, thirdKey) = await RenewAsync(mailbox, second, secondKey);
        app.Clock.Advance(TimeSpan.FromDays(20));
        var (fourth, fourthKey) = await RenewAsync(mailbox, third, thirdKey);
        // The BR bound when a certificate may be issued on the validation (4.2.1), not how long it lives: the last renewal made
        // 40 days after the validation gets a full 30-day life, past validation + 45 days.
        Assert.True(fourth.NotAfter > validatedAt.AddDays(69), $"notAfter {fourth.NotAfter:u}");

        app.Clock.Advance(TimeSpan.FromDays(6));
        var refused = await PostRenewalAsync(mailbox, fourth, fourthKey, SubscriberKeyPair.Generate("EC-P256"));
        var problem = await Http.AssertProblem(refused, HttpStatusCode.Forbidden);
        Assert.Equal("Mailbox validation too old to renew.", problem.GetProperty("title").GetString());
        var detail = problem.GetProperty("detail").GetString()!;
        Assert.Contains(mailbox, detail);
        Assert.Contains("invitation", detail);
        Assert.Contains(validatedAt.UtcDateTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture), detail);

        // Each certificate of the chain records the one validation it stands on.
        foreach (var serial in new[] { first.SerialNumber, second.SerialNumber, third.SerialNumber, fourth.SerialNumber })
        {
            var view = await app.Client.GetFromJsonAsync<JsonElement>($"/api/v1/certificates/{serial}", Http.Json);
            Assert.Equal(validatedAt, view.GetProperty("mailboxValidatedAt").GetDateTimeOffset(), TimeSpan.FromSeconds(1));
        }

        // The renewal page says so before the person chooses a file.
        var page = await app.Client.GetStringAsync($"/renew?serial={fourth.SerialNumber}");
        Assert.Contains("id=\"renew-revalidate\"", page);
        Assert.DoesNotContain("id=\"renew-form\"", page); // nothing to choose a file for
        Assert.Contains("invitation", page);
    }

    [Fact]
    public async Task A_new_invitation_starts_a_new_validation()
    {
        var mailbox = $"walt.{Guid.NewGuid().ToString("N")[..6]}@example.com";
        var (old, _) = await app.IssueAsync(mailbox, "signing");
        app.Clock!.Advance(TimeSpan.FromDays(1));
        var revalidatedAt = app.Clock.GetUtcNow();
        var (fresh, freshKey) = await app.IssueAsync(mailbox, "signing");
        var (renewed, _) = await RenewAsync(mailbox, fresh, freshKey);
        var oldView = await app.Client.GetFromJsonAsync<JsonElement>($"/api/v1/certificates/{old.SerialNumber}", Http.Json);
        var renewedView = await app.Client.GetFromJsonAsync<JsonElement>($"/api/v1/certificates/{renewed.SerialNumber}", Http.Json);
        Assert.Equal(revalidatedAt, renewedView.GetProperty("mailboxValidatedAt").GetDateTimeOffset(), TimeSpan.FromSeconds(1));
        Assert.True(oldView.GetProperty("mailboxValidatedAt").GetDateTimeOffset() < revalidatedAt);
    }

    private async Task<(EnrollmentResponse Cert, SubscriberKeyPair Key)> RenewAsync(string mailbox, EnrollmentResponse current, SubscriberKeyPair key)
    {
        var next = SubscriberKeyPair.Generate("EC-P256");
        var response = await PostRenewalAsync(mailbox, current, key, next);
        await Http.EnsureStatus(response, HttpStatusCode.Created);
        return ((await response.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!, next);
    }

    private Task<HttpResponseMessage> PostRenewalAsync(string mailbox, EnrollmentResponse current, SubscriberKeyPair key, SubscriberKeyPair next) =>
        PostSignedAtClockAsync(app, mailbox, current, key, next);

    /// <summary>A renewal of <paramref name="current"/> to <paramref name="next"/>, signed at the app's clock (tests move it weeks
    /// ahead, where openssl's signingTime would be stale).</summary>
    internal static Task<HttpResponseMessage> PostSignedAtClockAsync(CertPortalApp app, string mailbox, EnrollmentResponse current,
        SubscriberKeyPair key, SubscriberKeyPair next) =>
        app.Client.PostAsJsonAsync("/api/v1/renewals", new
        {
            cms = Convert.ToBase64String(RenewalRequests.SignByKeyIdentifier(next.CreateCsrPem(mailbox), current.CertificatePem, key, app.Clock!.GetUtcNow())),
        });
}

/// <summary>An issuing CA that lives one year, certificates that live 300 days and may be renewed at once.</summary>
public sealed class ShortCaApp : CertPortalApp
{
    public ShortCaApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow);

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Ca:IssuingValidityYears"] = "1",
        ["Issuance:ValidityDays"] = "300",
        ["Renewal:OpensBeforeExpiry"] = "400.00:00:00",
    };
}

public sealed class IssuingCaEndRenewalTests(ShortCaApp app) : IClassFixture<ShortCaApp>
{
    [Fact]
    public async Task A_renewal_that_would_not_outlive_the_current_certificate_because_the_issuing_ca_ends_is_refused()
    {
        var mailbox = $"xena.{Guid.NewGuid().ToString("N")[..6]}@example.com";
        var (first, firstKey) = await app.IssueAsync(mailbox, "signing");
        using var issuing = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(first.ChainPem);
        var caEnd = new DateTimeOffset(issuing.NotAfter.ToUniversalTime());

        // 200 days on, a renewal still gains time, up to the issuing CA's end (not the 300 days asked for).
        app.Clock!.Advance(TimeSpan.FromDays(200));
        var next = SubscriberKeyPair.Generate("EC-P256");
        var response = await PostRenewalAsync(mailbox, first, firstKey, next);
        await Http.EnsureStatus(response, HttpStatusCode.Created);
        var second = (await response.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!;
        Assert.Equal(caEnd, second.NotAfter, TimeSpan.FromSeconds(1));

        // Renewing that one again would give a certificate that ends with it: refused, saying why, and the certificate stays
        // renewable (nothing was spent).
        app.Clock.Advance(TimeSpan.FromDays(10));
        var refused = await PostRenewalAsync(mailbox, second, next, SubscriberKeyPair.Generate("EC-P256"));
        var problem = await Http.AssertProblem(refused, HttpStatusCode.UnprocessableEntity);
        Assert.Equal("Renewal would not outlive the current certificate.", problem.GetProperty("title").GetString());
        Assert.Contains(caEnd.UtcDateTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture), problem.GetProperty("detail").GetString());
        Assert.Equal("valid", (await app.GetCertificateAsync(second.SerialNumber)).Status);
    }

    private Task<HttpResponseMessage> PostRenewalAsync(string mailbox, EnrollmentResponse current, SubscriberKeyPair key, SubscriberKeyPair next) =>
        MailboxValidationAgeTests.PostSignedAtClockAsync(app, mailbox, current, key, next);
}
