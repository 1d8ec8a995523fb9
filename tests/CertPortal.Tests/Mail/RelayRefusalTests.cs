using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Mail;
using CertPortal.Tests.Infrastructure;
using MailKit.Net.Smtp;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace CertPortal.Tests.Mail;

/// <summary>A relay that refuses this service (relaying denied, authentication required: RFC 3463 class X.7, a 5xx to our
/// sender, or a refusal of our domain's SPF, DKIM or DMARC: RFC 7372's codes, or the words where a server sends none or a
/// generic 5.7.1) is a configuration problem, not a verdict on the message: the invitation stays queued with its link, says
/// why, and goes once the relay is fixed. A refusal of the recipient (5.1.1 user unknown, 5.2.2 mailbox full) or of the content
/// (5.7.1 spam) still fails that message, and so does a policy refusal at RCPT (5.7.1) once the relay takes the next recipient
/// right after it.</summary>
public sealed class RelayRefusalTests
{
    private sealed record Run(MailNode Node, SmtpServer Smtp, FakeTimeProvider Clock, ConcurrentQueue<string> Logs);

    /// <summary>A node with a fake clock whose outbox only the test's passes send.</summary>
    private static async Task WithNodeAsync(Func<Run, Task> test)
    {
        var smtp = new SmtpServer();
        await smtp.InitializeAsync();
        var data = TempDir.Create("relay-refusal");
        var logs = new ConcurrentQueue<string>();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var node = new MailNode(clock, new Dictionary<string, string?>(MailApp.MailSettings(smtp.Port)) { ["DataDirectory"] = data }, logs, outboxWorker: false);
        try
        {
            await node.InitializeAsync();
            await test(new Run(node, smtp, clock, logs));
        }
        finally
        {
            await node.DisposeAsync();
            await smtp.DisposeAsync();
            TempDir.Delete(data);
        }
    }

    private static string NewMailbox(string p) => $"{p}.{Guid.NewGuid().ToString("N")[..8]}@example.test";

    private static async Task InviteAsync(CertPortalApp node, string email, int validHours = 24) => await Http.EnsureStatus(
        await node.Admin.PostAsJsonAsync("/api/v1/tokens", new { email, profile = "signing", validHours, send = true }), HttpStatusCode.Created);

    private static async Task<JsonElement> NotificationAsync(CertPortalApp node, string email)
    {
        var page = await node.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/notifications?recipient={Uri.EscapeDataString(email)}", Http.Json);
        return Assert.Single(page.GetProperty("notifications").EnumerateArray());
    }

    private static async Task<OutboundMessage> RowAsync(CertPortalApp node, string email)
    {
        using var scope = node.Services.CreateScope();
        return await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().OutboundMessages.AsNoTracking().SingleAsync(m => m.Recipient == email);
    }

    private const string OurSettings = "Mail:From, Mail:UserName and Mail:Password";
    private const string OurDomainsRecords = "the SPF, DKIM and DMARC records of Mail:From's domain";

    /// <param name="fix">What the last error tells the administrator to look at.</param>
    [Theory]
    [InlineData("RCPT", "550 5.7.1 Relaying denied", OurSettings)]
    [InlineData("RCPT", "554 5.7.1 <someone@example.test>: Relay access denied", OurSettings)] // Postfix's words and code
    [InlineData("RCPT", "530 5.7.0 Authentication required", OurSettings)]
    [InlineData("RCPT", "554 <someone@example.test>: Relay access denied", OurSettings)] // Postfix without enhanced status codes
    [InlineData("RCPT", "550 relay not permitted", OurSettings)] // Exim's default configuration
    [InlineData("MAIL", "550 5.7.1 Sender address not permitted", OurSettings)]
    [InlineData("MAIL", "553 5.1.8 Sender address rejected: Domain not found", OurSettings)]
    // After the final dot, RFC 7372: the server judged our domain's authentication, not this message.
    [InlineData("DATA", "550 5.7.26 Unauthenticated email from example.test is not accepted due to domain's DMARC policy", OurDomainsRecords)] // Gmail's words
    [InlineData("DATA", "550 5.7.23 SPF validation failed", OurDomainsRecords)]
    // The same refusals as many servers word them, without an enhanced status or with the generic 5.7.1: the words decide.
    [InlineData("DATA", "550 SPF check failed", OurDomainsRecords)]
    [InlineData("DATA", "554 Message rejected due to DMARC policy", OurDomainsRecords)]
    [InlineData("DATA", "550 5.7.1 Unauthenticated email from example.test is not accepted due to domain's DMARC policy", OurDomainsRecords)] // Gmail's words, older code
    [InlineData("DATA", "550 Message rejected: DKIM check failed", OurDomainsRecords)]
    [InlineData("MAIL", "550 SPF check failed", OurDomainsRecords)] // SPF judges the sender: checked at MAIL FROM by many servers
    [InlineData("RCPT", "550 <someone@example.test>: Recipient address rejected: Message rejected due to: SPF fail - not authorized", OurDomainsRecords)] // Postfix's policyd-spf without enhanced codes
    public Task A_relay_refusing_this_service_keeps_every_invitation_with_its_link_until_it_accepts(string command, string reply, string fix) => WithNodeAsync(async run =>
    {
        var first = NewMailbox("first");
        var second = NewMailbox("second");
        run.Smtp.Answer(command, reply);
        await InviteAsync(run.Node, first);
        await InviteAsync(run.Node, second);

        // Every message would meet the refusal: the pass stops as for an outage, at the first or, at RCPT, once the second
        // recipient is refused too (a refusal of one recipient is told apart by the server taking the next: below).
        var refused = await run.Node.PassAsync();
        Assert.Equal((0, 0), (refused.Sent, refused.Failed));
        Assert.InRange(refused.Retried, 1, 2);
        var notice = await NotificationAsync(run.Node, first);
        Assert.Equal("queued", notice.GetProperty("status").GetString());
        var lastError = notice.GetProperty("lastError").GetString();
        Assert.Contains(reply, lastError);
        Assert.Contains($"configuration problem ({fix}", lastError);
        Assert.Contains(run.Logs, l => l.Contains("configuration problem", StringComparison.Ordinal) && l.Contains(reply[..3], StringComparison.Ordinal));
        Assert.Empty(run.Smtp.Messages());
        Assert.NotNull((await RowAsync(run.Node, first)).SealedLink);
        Assert.NotNull((await RowAsync(run.Node, second)).SealedLink);

        // Still refused at the next try (after the backoff): still kept.
        run.Clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(0, (await run.Node.PassAsync()).Failed);

        run.Smtp.Answer(command, null);
        run.Clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(2, (await run.Node.PassAsync()).Sent);
        foreach (var email in new[] { first, second })
        {
            var message = Assert.Single(run.Smtp.MessagesTo(email));
            var link = InvitationTests.EnrollmentLink(message.TextBody);
            var token = Uri.UnescapeDataString(new Uri(link).Fragment["#token=".Length..]);
            var cert = await run.Node.EnrollAsync(token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email));
            Assert.Equal("valid", (await run.Node.GetCertificateAsync(cert.SerialNumber)).Status);
            Assert.Null((await RowAsync(run.Node, email)).SealedLink);
        }
    });

    [Theory]
    [InlineData("RCPT", "550 5.1.1 User unknown")]
    [InlineData("RCPT", "552 5.2.2 Mailbox full")]
    // A verdict on the content, with the same 5.7.1 a server may send for our domain's DMARC: nothing names SPF, DKIM or DMARC.
    [InlineData("DATA", "550 5.7.1 Message rejected as spam")]
    [InlineData("DATA", "554 5.7.1 Message content rejected")]
    [InlineData("DATA", "550 5.7.1 Message rejected as spam (SPF=pass, DKIM=pass, DMARC=pass)")]
    public Task A_refusal_of_the_recipient_or_the_content_fails_that_invitation_for_good(string command, string reply) => WithNodeAsync(async run =>
    {
        var email = NewMailbox("unknown");
        run.Smtp.Answer(command, reply);
        await InviteAsync(run.Node, email);

        Assert.Equal(1, (await run.Node.PassAsync()).Failed);
        Assert.Equal(reply, await FailedForGoodAsync(run, email, attempts: 1));
    });

    [Fact]
    public Task A_recipient_refused_by_policy_while_the_relay_takes_the_next_fails_alone_and_the_next_is_sent() => WithNodeAsync(async run =>
    {
        // One mailbox refused by the relay's policy (Postfix's check_recipient_access, an Exchange transport rule) while it
        // relays for us: the same 5.7.1 a relay refusing us would send, told apart by its answer to the next recipient.
        var refused = RefusedByPolicy(run);
        var taken = NewMailbox("taken");
        await InviteAsync(run.Node, refused.Mailbox);
        await InviteAsync(run.Node, taken);

        await TheNextIsSentAndTheRefusedFailsAsync(run, refused, taken, attempts: 1);
    });

    [Fact]
    public Task A_recipient_refused_by_policy_alone_is_kept_then_fails_in_front_of_the_next_message_the_relay_takes() => WithNodeAsync(async run =>
    {
        var refused = RefusedByPolicy(run);
        await InviteAsync(run.Node, refused.Mailbox);

        // Alone in its session, nothing tells it from a relay refusing us: kept, as in an outage, and the last error says both.
        var alone = await run.Node.PassAsync();
        Assert.Equal((0, 1, 0), (alone.Sent, alone.Retried, alone.Failed));
        var notice = await NotificationAsync(run.Node, refused.Mailbox);
        Assert.Equal("queued", notice.GetProperty("status").GetString());
        Assert.Contains(refused.Reply, notice.GetProperty("lastError").GetString());
        Assert.Contains("Unless it refuses only this recipient", notice.GetProperty("lastError").GetString());
        Assert.NotNull((await RowAsync(run.Node, refused.Mailbox)).SealedLink);

        // The next invitation goes at once, before the kept one's backoff ends; the kept one is tried in front of it, and the
        // relay taking that next recipient tells.
        var taken = NewMailbox("taken");
        await InviteAsync(run.Node, taken);
        await TheNextIsSentAndTheRefusedFailsAsync(run, refused, taken, attempts: 2);
    });

    [Fact]
    public Task A_relay_refusing_every_recipient_by_policy_costs_no_message_however_the_passes_fall() => WithNodeAsync(async run =>
    {
        run.Smtp.Answer("RCPT", "550 5.7.1 Relaying denied");
        var mailboxes = new[] { NewMailbox("a"), NewMailbox("b"), NewMailbox("c") };
        foreach (var email in mailboxes)
        {
            // Alone, then a kept one in front of each new one: refused twice running, the pass stops as for an outage.
            await InviteAsync(run.Node, email);
            var pass = await run.Node.PassAsync();
            Assert.Equal((0, 0), (pass.Sent, pass.Failed));
        }
        run.Clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(0, (await run.Node.PassAsync()).Failed);
        foreach (var email in mailboxes)
        {
            Assert.Equal("queued", (await NotificationAsync(run.Node, email)).GetProperty("status").GetString());
            Assert.NotNull((await RowAsync(run.Node, email)).SealedLink);
        }

        run.Smtp.Answer("RCPT", null);
        run.Clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(3, (await run.Node.PassAsync()).Sent);
        foreach (var email in mailboxes) Assert.Single(run.Smtp.MessagesTo(email));
    });

    /// <summary>A mailbox the relay refuses by policy (5.7.1 at RCPT) while it takes every other, and the relay's answer.</summary>
    private static (string Mailbox, string Reply) RefusedByPolicy(Run run)
    {
        var mailbox = NewMailbox("refused");
        var reply = $"550 5.7.1 <{mailbox}>: Recipient address rejected: Access denied";
        run.Smtp.Answer("RCPT", reply, recipient: mailbox);
        return (mailbox, reply);
    }

    /// <summary>The next pass sends <paramref name="taken"/> and, the relay having taken it right after refusing the other,
    /// fails the refused one for good with the relay's answer.</summary>
    private static async Task TheNextIsSentAndTheRefusedFailsAsync(Run run, (string Mailbox, string Reply) refused, string taken, int attempts)
    {
        var pass = await run.Node.PassAsync();
        Assert.Equal((1, 0, 1), (pass.Sent, pass.Retried, pass.Failed));
        Assert.StartsWith(refused.Reply, await FailedForGoodAsync(run, refused.Mailbox, attempts));
        Assert.Single(run.Smtp.MessagesTo(taken));
    }

    /// <summary>What an administrator sees of a message refused for good: failed after <paramref name="attempts"/>, its link
    /// erased, nothing delivered. Returns its last error.</summary>
    private static async Task<string?> FailedForGoodAsync(Run run, string email, int attempts)
    {
        var notice = await NotificationAsync(run.Node, email);
        Assert.Equal("failed", notice.GetProperty("status").GetString());
        Assert.Equal(attempts, notice.GetProperty("attempts").GetInt32());
        Assert.Null((await RowAsync(run.Node, email)).SealedLink);
        Assert.Empty(run.Smtp.MessagesTo(email));
        return notice.GetProperty("lastError").GetString();
    }

    [Fact]
    public Task An_invitation_refused_by_the_relay_until_its_token_expired_fails_then_and_keeps_the_relays_answer() => WithNodeAsync(async run =>
    {
        // The bound: the invitation's own (its token's validity), the same as for an outage; once the link could only lead to
        // an error page it is failed and erased, and the refusal that kept it is still there to read.
        var email = NewMailbox("expired");
        run.Smtp.Answer("RCPT", "550 5.7.1 Relaying denied");
        await InviteAsync(run.Node, email, validHours: 1);
        Assert.Equal(1, (await run.Node.PassAsync()).Retried);

        run.Clock.Advance(TimeSpan.FromHours(2));
        Assert.Equal(1, (await run.Node.PassAsync()).Failed);
        var notice = await NotificationAsync(run.Node, email);
        Assert.Equal("failed", notice.GetProperty("status").GetString());
        var lastError = notice.GetProperty("lastError").GetString();
        Assert.Contains("token was expired", lastError);
        Assert.Contains("5.7.1 Relaying denied", lastError);
        Assert.Null((await RowAsync(run.Node, email)).SealedLink);
    });

    [Theory]
    [InlineData(550, "5.7.1 Relaying denied", true)]
    [InlineData(554, "5.7.1 <a@example.test>: Relay access denied", true)]
    [InlineData(550, "5.7.26 Unauthenticated mail is prohibited\n5.7.26 more", true)]
    [InlineData(535, "Authentication credentials invalid", true)] // RFC 4954's code, without an enhanced status
    [InlineData(550, "5.1.1 User unknown", false)]
    [InlineData(552, "5.2.2 Mailbox full", false)]
    [InlineData(550, "Relaying denied", true)] // sendmail, Postfix, Exim and Exchange without enhanced codes
    [InlineData(554, "<a@example.test>: Relay access denied", true)]
    [InlineData(550, "relay not permitted", true)]
    [InlineData(550, "Unable to relay for a@example.test", true)]
    [InlineData(550, "Mailbox unavailable", false)] // no enhanced status and no relay refusal: nothing says it is about us
    [InlineData(550, "5.1.1 Relay not permitted", false)] // the enhanced status decides: X.1 is the recipient's address
    [InlineData(550, "5.1.1 not 5.7.1", false)]
    [InlineData(550, "5.7.1234 not an enhanced status", false)]
    [InlineData(550, "<a@example.test>: Recipient address rejected: SPF fail - not authorized", true)] // our domain's SPF, no code
    [InlineData(550, "5.1.1 User unknown (SPF pass)", false)] // the enhanced status decides
    public void Only_security_or_policy_refusals_refuse_the_service(int status, string text, bool refusesService) =>
        Assert.Equal(refusesService, SmtpSender.RefusesService((SmtpStatusCode)status, text));

    [Theory]
    [InlineData("5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC policy.\n5.7.26 Please contact", true)]
    [InlineData("5.7.20 No passing DKIM signature found", true)]
    [InlineData("5.7.23 SPF validation failed", true)]
    [InlineData("5.7.27 Sender address has null MX", true)]
    [InlineData("5.7.7 Message integrity failure", true)]
    [InlineData("5.7.1 Message refused as spam", false)] // a verdict on the content: this message's
    [InlineData("5.7.28 Unusual rate of unsolicited mail", false)]
    [InlineData("5.7.260 not an enhanced status", false)]
    // Without an enhanced status or with a security or policy one (5.7.1 for every policy refusal), the words decide.
    [InlineData("SPF check failed", true)]
    [InlineData("5.7.1 SPF fail - not authorized", true)]
    [InlineData("Rejected: SPF validation failed for example.com", true)]
    [InlineData("5.7.1 Unauthenticated email from example.com is not accepted due to domain's DMARC policy", true)]
    [InlineData("Message rejected due to DMARC policy", true)]
    [InlineData("DMARC policy violation", true)]
    [InlineData("5.7.509 Access denied, sending domain [example.com] does not pass DMARC verification and has a DMARC policy of reject.", true)] // Microsoft 365
    [InlineData("5.7.1 DKIM signature verification failed", true)]
    [InlineData("Message rejected: DKIM check failed", true)]
    [InlineData("5.7.1 Message rejected as spam", false)]
    [InlineData("5.7.1 Message content rejected", false)]
    [InlineData("5.7.1 Listed in SPFBL", false)] // a spam blocklist (spfbl.net), not SPF: whole words only
    [InlineData("5.7.1 Message rejected as spam (SPF=pass, DKIM=pass, DMARC=pass)", false)] // checks quoted as passed
    [InlineData("Spam score too high; spf: pass dkim pass", false)]
    [InlineData("5.7.1 Rejected: DKIM=pass but SPF=fail", true)]
    public void Only_refusals_of_our_domains_authentication_after_the_content_refuse_the_service(string text, bool refusesService) =>
        Assert.Equal(refusesService, SmtpSender.RefusesSendersAuthentication(text));
}
