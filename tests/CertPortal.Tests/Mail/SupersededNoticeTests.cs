using CertPortal.Renewal;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Renewal;

namespace CertPortal.Tests.Mail;

/// <summary>Mail on, the renewal window always open, and a renewed certificate superseded as soon as its successor exists.</summary>
public sealed class SupersedingMailApp : MailApp
{
    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>(base.Settings)
    {
        ["Renewal:OpensBeforeExpiry"] = "400.00:00:00",
        ["Renewal:SupersedeAfter"] = "00:00:00",
    };
}

/// <summary>The supersede worker revokes a renewed certificate as <c>superseded</c>: the holder renewed it themselves, and the
/// notice is about that. It was the notice of any revocation: "has been revoked", and "to get a new digital ID, ask your
/// administrator for an invitation", to someone who holds the new one already.</summary>
public sealed class SupersededNoticeTests(SupersedingMailApp app) : IClassFixture<SupersedingMailApp>
{
    [Fact]
    public async Task A_certificate_superseded_by_its_renewal_is_told_which_one_replaced_it_and_not_to_ask_for_an_invitation()
    {
        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("superseded-notice");
        var person = $"superseded.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (old, key) = await app.IssueAsync(person, "signing");
        var (renewed, _) = await RenewalRequests.RenewToNewKeyAsync(app.Client, dir, person, old, key);
        // The service's own pass may be under way (it runs every minute): ours then finds the pass lock held and skips, and the
        // old certificate is superseded by that one.
        var until = DateTimeOffset.UtcNow.AddSeconds(30);
        while ((await app.GetCertificateAsync(old.SerialNumber)).RevocationReason is null && DateTimeOffset.UtcNow < until)
            if (await app.Service<SupersedeWorker>().RunOnceAsync(CancellationToken.None) == 0) await Task.Delay(100);
        Assert.Equal("superseded", (await app.GetCertificateAsync(old.SerialNumber)).RevocationReason);

        var all = await app.Smtp.WaitForAsync(ms => ms.Any(m => m.To.Mailboxes.Any(a => a.Address == person) &&
                                                               (m.TextBody ?? "").Contains(old.SerialNumber, StringComparison.Ordinal)));
        var notice = Assert.Single(all, m => m.To.Mailboxes.Any(a => a.Address == person));
        Assert.Equal($"Your digital ID for {person} has been replaced by its renewal", notice.Subject);
        foreach (var body in new[] { notice.TextBody ?? "", notice.HtmlBody ?? "" })
        {
            Assert.Contains(renewed.SerialNumber, body);
            Assert.DoesNotContain("invitation", body);
        }
    }
}
