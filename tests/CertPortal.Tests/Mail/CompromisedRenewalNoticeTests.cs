using System.Net;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Renewal;
using MimeKit;

namespace CertPortal.Tests.Mail;

/// <summary>Mail on, and the renewal window always open.</summary>
public sealed class RenewingMailApp : MailApp
{
    protected override IDictionary<string, string?> Settings =>
        new Dictionary<string, string?>(base.Settings) { ["Renewal:OpensBeforeExpiry"] = "400.00:00:00" };
}

/// <summary>A renewal revoked because the certificate it was renewed from had its key reported compromised: its holder may be the
/// legitimate one, whose own new key nobody reported. The notice says why it was revoked and what to do; it said "its key may have
/// been compromised", and told them to stop using a key that is not known compromised.</summary>
public sealed class CompromisedRenewalNoticeTests(RenewingMailApp app) : IClassFixture<RenewingMailApp>
{
    [Fact]
    public async Task A_renewal_revoked_with_a_compromised_predecessor_is_told_why_and_to_enrol_again()
    {
        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("renewal-notice");
        var person = $"renewed.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (a, aKey) = await app.IssueAsync(person, "signing");
        var (b, bKey) = await RenewAsync(dir, person, a, aKey);
        var (c, _) = await RenewAsync(dir, person, b, bKey);

        await Http.EnsureStatus(await app.RevokeAsync(a.SerialNumber, "keyCompromise"), HttpStatusCode.OK);

        var own = await NoticeForAsync(person, a.SerialNumber);
        Assert.Contains("may have been compromised", own);
        foreach (var renewal in new[] { b.SerialNumber, c.SerialNumber })
        {
            var notice = await NoticeForAsync(person, renewal);
            // C was renewed from B: the cause named is still A, whose key was reported.
            Assert.Contains($"renewed from your digital ID {a.SerialNumber}", notice);
            Assert.Contains("reported compromised", notice);
            Assert.DoesNotContain("may have been compromised", notice);
            Assert.DoesNotContain("may be known to someone else", notice);
            Assert.Contains("ask your administrator for an invitation", notice);
        }
    }

    /// <summary>The text of the revocation notice that names <paramref name="serial"/>.</summary>
    private async Task<string> NoticeForAsync(string person, string serial)
    {
        var all = await app.Smtp.WaitForAsync(m => Revocations(m, person).Any(t => t.Contains(serial, StringComparison.Ordinal)));
        return Revocations(all, person).First(t => t.Contains(serial, StringComparison.Ordinal));
    }

    private static IEnumerable<string> Revocations(IReadOnlyList<MimeMessage> messages, string person) => messages
        .Where(m => m.To.Mailboxes.Any(a => a.Address == person) && (m.Subject ?? "").Contains("has been revoked", StringComparison.Ordinal))
        .Select(m => m.TextBody ?? "");

    private Task<(EnrollmentResponse Cert, SubscriberKeyPair Key)> RenewAsync(ToolDir dir, string mailbox, EnrollmentResponse current,
        SubscriberKeyPair key) => RenewalRequests.RenewToNewKeyAsync(app.Client, dir, mailbox, current, key);
}
