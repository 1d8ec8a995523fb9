using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace CertPortal.Tests.Mail;

/// <summary>A reminder that waited while the SMTP server was down and lost its point meanwhile (its certificate revoked, or the
/// next reminder's day come) is not sent, and says why; none is queued for a certificate whose every use a newer one of its
/// holder serves; and a person with separate signing and encryption IDs can tell their two reminders apart.</summary>
public sealed class StaleReminderTests
{
    /// <summary>A node with a fake clock, reminders on <paramref name="reminderDays"/>, and passes driven by the test only.</summary>
    /// <param name="extra">More settings (key: path below "CertPortal:").</param>
    private static async Task WithNodeAsync(int[] reminderDays, Func<MailNode, SmtpServer, FakeTimeProvider, Task> test,
        IReadOnlyDictionary<string, string?>? extra = null)
    {
        var smtp = new SmtpServer();
        await smtp.InitializeAsync();
        var data = TempDir.Create("stale-reminder");
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var settings = new Dictionary<string, string?>(MailApp.MailSettings(smtp.Port))
        {
            ["DataDirectory"] = data,
            ["Mail:PollInterval"] = "1.00:00:00",
        };
        for (var i = 0; i < reminderDays.Length; i++) settings[$"Mail:ExpiryReminderDays:{i}"] = reminderDays[i].ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var (k, v) in extra ?? new Dictionary<string, string?>()) settings[k] = v;
        var node = new MailNode(clock, settings);
        try
        {
            await node.InitializeAsync();
            await test(node, smtp, clock);
        }
        finally
        {
            await node.DisposeAsync();
            await smtp.DisposeAsync();
            TempDir.Delete(data);
        }
    }

    [Fact]
    public Task A_reminder_for_a_certificate_revoked_while_it_waited_is_not_sent() => WithNodeAsync([30], async (node, smtp, clock) =>
    {
        var email = $"stale.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (issued, _) = await node.IssueAsync(email, "signing");

        smtp.Stop();
        clock.Advance(issued.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        var down = await node.PassAsync();
        Assert.Equal((1, 0, 1), (down.Queued, down.Sent, down.Retried));

        await Http.EnsureStatus(await node.RevokeAsync(issued.SerialNumber, "affiliationChanged"), HttpStatusCode.OK);
        await smtp.StartAsync();
        clock.Advance(TimeSpan.FromHours(2)); // past the retry's backoff
        var up = await node.PassAsync();
        Assert.Equal(1, up.Failed); // the reminder; what was sent is the revocation notice
        Assert.DoesNotContain(smtp.MessagesTo(email), m => (m.Subject ?? "").Contains("expires", StringComparison.Ordinal));

        var listed = await node.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/notifications?kind=expiry-reminder&recipient={email}", Http.Json);
        var reminder = Assert.Single(listed.GetProperty("notifications").EnumerateArray());
        Assert.Equal("failed", reminder.GetProperty("status").GetString());
        Assert.Contains("revoked before the reminder could be sent", reminder.GetProperty("lastError").GetString());
    });

    [Fact]
    public Task A_reminder_for_a_certificate_replaced_by_a_new_id_while_it_waited_is_not_sent() => WithNodeAsync([30], async (node, smtp, clock) =>
    {
        // While the SMTP server was down the person enrolled again from an invitation (no renewal: the old ID's RenewedBy is empty).
        var email = $"replaced.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (issued, _) = await node.IssueAsync(email, "encryption");

        smtp.Stop();
        clock.Advance(issued.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        var down = await node.PassAsync();
        Assert.Equal((1, 0, 1), (down.Queued, down.Sent, down.Retried));

        await node.IssueAsync(email.ToUpperInvariant(), "dual");
        await smtp.StartAsync();
        clock.Advance(TimeSpan.FromHours(2));
        var up = await node.PassAsync();
        Assert.Equal(1, up.Failed);
        Assert.DoesNotContain(smtp.MessagesTo(email), m => (m.Subject ?? "").Contains("expires", StringComparison.Ordinal));
        var listed = await node.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/notifications?kind=expiry-reminder&recipient={email}", Http.Json);
        Assert.Contains("newer digital ID", Assert.Single(listed.GetProperty("notifications").EnumerateArray()).GetProperty("lastError").GetString());
    });

    [Fact]
    public Task A_reminder_that_waited_says_how_many_days_are_left_when_it_is_sent() => WithNodeAsync([30], async (node, smtp, clock) =>
    {
        var email = $"waited.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (issued, _) = await node.IssueAsync(email, "signing");

        smtp.Stop();
        clock.Advance(issued.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        Assert.Equal(1, (await node.PassAsync()).Queued);
        clock.Advance(TimeSpan.FromDays(10));
        await smtp.StartAsync();
        await node.PassAsync();

        var reminder = Assert.Single(smtp.MessagesTo(email), m => (m.Subject ?? "").Contains("expires", StringComparison.Ordinal));
        Assert.Equal($"Your signing digital ID for {email} expires in 20 days", reminder.Subject);
        Assert.Contains("in 20 days", reminder.TextBody);
    });

    [Fact]
    public Task The_outbox_listing_shows_a_waiting_reminders_subject_as_it_is_sent() => WithNodeAsync([30], async (node, smtp, clock) =>
    {
        // The listing (API and console) showed the subject of the day the reminder was queued, "expires in 30 days", beside the mail
        // that said 20.
        var email = $"listed.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (issued, _) = await node.IssueAsync(email, "signing");
        async Task<JsonElement> ListedAsync() => Assert.Single((await node.Admin.GetFromJsonAsync<JsonElement>(
            $"/api/v1/notifications?kind=expiry-reminder&recipient={email}", Http.Json)).GetProperty("notifications").EnumerateArray());

        smtp.Stop();
        clock.Advance(issued.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        Assert.Equal(1, (await node.PassAsync()).Queued);
        clock.Advance(TimeSpan.FromDays(10));
        var waiting = await ListedAsync();
        Assert.Equal("queued", waiting.GetProperty("status").GetString());
        Assert.Equal($"Your signing digital ID for {email} expires in 20 days", waiting.GetProperty("subject").GetString());

        clock.Advance(TimeSpan.FromDays(1));
        await smtp.StartAsync();
        await node.PassAsync();
        var mail = Assert.Single(smtp.MessagesTo(email), m => (m.Subject ?? "").Contains("expires", StringComparison.Ordinal));
        clock.Advance(TimeSpan.FromDays(5));
        var sent = await ListedAsync();
        Assert.Equal("sent", sent.GetProperty("status").GetString());
        Assert.Equal(mail.Subject, sent.GetProperty("subject").GetString());
        Assert.Equal($"Your signing digital ID for {email} expires in 19 days", mail.Subject);
    });

    [Fact]
    public Task A_reminder_that_waited_past_the_next_reminders_day_gives_way_to_it() => WithNodeAsync([30, 7], async (node, smtp, clock) =>
    {
        // The SMTP server is down from the 30th day before expiry until after the 7th. Sent when it came back, the 30-day
        // reminder arrived beside the 7-day one, saying "30 days" a week before the expiry.
        var email = $"late.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (issued, _) = await node.IssueAsync(email, "signing");

        smtp.Stop();
        clock.Advance(issued.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        var down = await node.PassAsync();
        Assert.Equal((1, 1), (down.Queued, down.Retried));
        clock.Advance(issued.NotAfter.AddDays(-7).AddHours(1) - clock.GetUtcNow());
        await node.PassAsync();
        await smtp.StartAsync();
        clock.Advance(TimeSpan.FromHours(2));
        await node.PassAsync();

        var reminders = smtp.MessagesTo(email).Where(m => (m.Subject ?? "").Contains("expires", StringComparison.Ordinal)).ToList();
        Assert.Equal($"Your signing digital ID for {email} expires in 7 days", Assert.Single(reminders).Subject);
        var listed = await node.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/notifications?kind=expiry-reminder&recipient={email}&status=failed", Http.Json);
        Assert.Contains("7-day reminder", Assert.Single(listed.GetProperty("notifications").EnumerateArray()).GetProperty("lastError").GetString());
    });

    [Fact]
    public Task A_certificate_whose_uses_a_newer_dual_certificate_serves_gets_no_reminder() => WithNodeAsync([30], async (node, smtp, clock) =>
    {
        // The organisation moved from separate signing and encryption IDs to dual ones: moved gets a dual ID beside the two
        // older ones. Each older one was reminded of ("renew your digital ID", with a link that renews it), as directory
        // enrollment already counts a dual certificate for signing and for encryption. A signing ID does not serve what a
        // dual one does: the older dual ID of kept is still due.
        var run = Guid.NewGuid().ToString("N")[..8];
        var moved = $"moved.{run}@example.test";
        var kept = $"kept.{run}@example.test";
        var (signing, _) = await node.IssueAsync(moved, "signing");
        await node.IssueAsync(moved, "encryption");
        var (dual, _) = await node.IssueAsync(kept, "dual");
        clock.Advance(TimeSpan.FromDays(1));
        await node.IssueAsync(moved, "dual");
        await node.IssueAsync(kept, "signing");

        clock.Advance(signing.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        var pass = await node.PassAsync();
        Assert.Equal(1, pass.Queued);
        var reminder = Assert.Single(await smtp.WaitForMessagesToAsync(kept));
        Assert.Contains(dual.SerialNumber, reminder.TextBody);
        var listed = await node.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/notifications?kind=expiry-reminder&recipient={moved}", Http.Json);
        Assert.Equal(0, listed.GetProperty("total").GetInt32());
        Assert.Empty(smtp.MessagesTo(moved));
    });

    [Fact]
    public Task Separate_signing_and_encryption_ids_get_reminders_that_say_which_is_which() => WithNodeAsync([30], async (node, smtp, clock) =>
    {
        // Both reminders had the same subject and the same words, "you can no longer sign mail with it, and others cannot encrypt
        // new mail to you with it", told of a signing ID (nobody encrypts to it) and of an encryption ID (it signs nothing): two
        // mails a person took for one sent twice, each with a link that renews only the ID whose file is chosen on the page.
        var email = $"pair.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (signing, _) = await node.IssueAsync(email, "signing");
        var (encryption, _) = await node.IssueAsync(email, "encryption");

        clock.Advance(signing.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        await node.PassAsync();
        var both = await smtp.WaitForMessagesToAsync(email, 2);
        var forSigning = Assert.Single(both, m => (m.TextBody ?? "").Contains(signing.SerialNumber, StringComparison.Ordinal));
        var forEncryption = Assert.Single(both, m => (m.TextBody ?? "").Contains(encryption.SerialNumber, StringComparison.Ordinal));
        Assert.Equal($"Your signing digital ID for {email} expires in 30 days", forSigning.Subject);
        Assert.Equal($"Your encryption digital ID for {email} expires in 30 days", forEncryption.Subject);
        foreach (var body in new[] { forSigning.TextBody, forSigning.HtmlBody })
        {
            Assert.Contains("for signing mail", body);
            Assert.DoesNotContain("encrypt", body);
        }
        foreach (var body in new[] { forEncryption.TextBody, forEncryption.HtmlBody })
        {
            Assert.Contains("for receiving encrypted mail", body);
            Assert.Contains("read mail that was encrypted to it", body);
            Assert.DoesNotContain("sign mail", body);
        }
    });

    private static bool IsReminder(MimeKit.MimeMessage m) => (m.Subject ?? "").Contains("expires", StringComparison.Ordinal);

    /// <summary>The CA issues for two domains; a test takes the second off the list, as an operator does who gives up a domain.</summary>
    private static readonly Dictionary<string, string?> TwoDomains = new()
    {
        ["AllowedDomains:0"] = "kept.test",
        ["AllowedDomains:1"] = "dropped.test",
    };

    private static async Task DropSecondDomainAsync(MailNode node)
    {
        await node.StopAsync();
        node.Configured.Remove("AllowedDomains:1");
        node.Start();
    }

    [Fact]
    public Task A_certificate_of_a_domain_taken_off_the_allowed_list_gets_no_reminder() => WithNodeAsync([30], async (node, smtp, clock) =>
    {
        // Its link would lead to a renewal refused with 403 "Domain not allowed." (RemovedDomainTests), and so would the invitation
        // a reminder suggests when renewal is off.
        var run = Guid.NewGuid().ToString("N")[..8];
        var dropped = $"gone.{run}@dropped.test";
        var kept = $"stays.{run}@kept.test";
        var (issued, _) = await node.IssueAsync(dropped, "signing");
        await node.IssueAsync(kept, "signing");
        await DropSecondDomainAsync(node);

        clock.Advance(issued.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        var pass = await node.PassAsync();
        Assert.Single(await smtp.WaitForMessagesToAsync(kept), IsReminder);
        var listed = await node.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/notifications?kind=expiry-reminder&recipient={dropped}", Http.Json);
        Assert.Equal(0, listed.GetProperty("total").GetInt32());
        Assert.Empty(smtp.MessagesTo(dropped));
        Assert.Equal(1, pass.Queued);
    }, TwoDomains);

    [Fact]
    public Task A_reminder_that_waited_while_its_domain_was_taken_off_the_allowed_list_is_not_sent() => WithNodeAsync([30], async (node, smtp, clock) =>
    {
        var email = $"waiting.{Guid.NewGuid().ToString("N")[..8]}@dropped.test";
        var (issued, _) = await node.IssueAsync(email, "signing");

        smtp.Stop();
        clock.Advance(issued.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        var down = await node.PassAsync();
        Assert.Equal((1, 0, 1), (down.Queued, down.Sent, down.Retried));

        await DropSecondDomainAsync(node);
        await smtp.StartAsync();
        clock.Advance(TimeSpan.FromHours(2));
        await node.PassAsync();
        Assert.DoesNotContain(smtp.MessagesTo(email), IsReminder);
        var listed = await node.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/notifications?kind=expiry-reminder&recipient={email}", Http.Json);
        var reminder = Assert.Single(listed.GetProperty("notifications").EnumerateArray());
        Assert.Equal("failed", reminder.GetProperty("status").GetString());
        Assert.Contains("no longer issues certificates for 'dropped.test'", reminder.GetProperty("lastError").GetString());
    }, TwoDomains);

    /// <summary>The operator puts the domain back (configuration and restart), as after taking it off by mistake.</summary>
    private static async Task RestoreSecondDomainAsync(MailNode node)
    {
        await node.StopAsync();
        node.Configured["AllowedDomains:1"] = "dropped.test";
        node.Start();
    }

    private static async Task<List<JsonElement>> RemindersListedAsync(MailNode node, string email) =>
        (await node.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/notifications?kind=expiry-reminder&recipient={email}", Http.Json))
        .GetProperty("notifications").EnumerateArray().ToList();

    [Fact]
    public Task A_reminder_given_up_while_its_domain_was_off_the_list_is_sent_once_the_domain_is_back() => WithNodeAsync([30], async (node, smtp, clock) =>
    {
        // failed's reminder waited for the SMTP server while the domain was taken off AllowedDomains, and was given up at sending;
        // when the domain came back its (serial, day) key was still taken by that failed row, so none was queued again and the
        // holder was never reminded. skipped's day came while the domain was off (no row: it is queued once the domain is back),
        // and sent was reminded before: it must not be reminded twice.
        var run = Guid.NewGuid().ToString("N")[..8];
        var sent = $"sent.{run}@dropped.test";
        var failed = $"failed.{run}@dropped.test";
        var skipped = $"skipped.{run}@dropped.test";
        var (s, _) = await node.IssueAsync(sent, "signing");
        clock.Advance(TimeSpan.FromDays(2));
        var (f, _) = await node.IssueAsync(failed, "signing");
        clock.Advance(TimeSpan.FromDays(2));
        var (k, _) = await node.IssueAsync(skipped, "signing");

        clock.Advance(s.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        await node.PassAsync();
        Assert.Single(await smtp.WaitForMessagesToAsync(sent), IsReminder);
        smtp.Stop();
        clock.Advance(f.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        var down = await node.PassAsync();
        Assert.Equal((1, 1), (down.Queued, down.Retried));
        await DropSecondDomainAsync(node);
        await smtp.StartAsync();
        clock.Advance(TimeSpan.FromHours(2));
        await node.PassAsync();
        Assert.Equal("failed", Assert.Single(await RemindersListedAsync(node, failed)).GetProperty("status").GetString());
        clock.Advance(k.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        Assert.Equal(0, (await node.PassAsync()).Queued);

        // The clock stays put from here: a jump past the lease of a send in flight (the restarted node's own first pass) would
        // hand the message to another pass while it is being sent.
        await RestoreSecondDomainAsync(node);
        // Passes racing each other (and the restarted node's own first pass), as nodes do: each reminder once, and one row per
        // (serial, day).
        await Task.WhenAll(node.PassAsync(), node.PassAsync(), node.PassAsync());
        await node.PassAsync();
        Assert.Equal([(sent, 1), (failed, 1), (skipped, 1)], new[] { sent, failed, skipped }.Select(e => (e, smtp.MessagesTo(e).Count(IsReminder))));
        foreach (var email in new[] { sent, failed, skipped })
        {
            Assert.StartsWith($"Your signing digital ID for {email} expires in ", Assert.Single(smtp.MessagesTo(email), IsReminder).Subject);
            var listed = Assert.Single(await RemindersListedAsync(node, email));
            Assert.Equal("sent", listed.GetProperty("status").GetString());
            Assert.Equal(JsonValueKind.Null, listed.GetProperty("lastError").ValueKind);
        }
        Assert.Contains("expires in 28 days", Assert.Single(smtp.MessagesTo(failed), IsReminder).Subject);
        Assert.Contains(f.SerialNumber, Assert.Single(smtp.MessagesTo(failed), IsReminder).TextBody);
        Assert.Contains("/renew?serial=", Assert.Single(smtp.MessagesTo(failed), IsReminder).TextBody);
    }, TwoDomains);

    [Fact]
    public Task A_reminder_given_up_while_its_domain_was_off_the_list_stays_given_up_once_the_next_reminders_day_has_come() =>
        WithNodeAsync([30, 7], async (node, smtp, clock) =>
        {
            // Queued again, the 30-day reminder would arrive beside the 7-day one (the outbox would give it up as stale anyway).
            var email = $"later.{Guid.NewGuid().ToString("N")[..8]}@dropped.test";
            var (issued, _) = await node.IssueAsync(email, "signing");
            smtp.Stop();
            clock.Advance(issued.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
            await node.PassAsync();
            await DropSecondDomainAsync(node);
            await smtp.StartAsync();
            clock.Advance(TimeSpan.FromHours(2));
            await node.PassAsync();
            clock.Advance(issued.NotAfter.AddDays(-7).AddHours(1) - clock.GetUtcNow());
            await node.PassAsync();

            await RestoreSecondDomainAsync(node);
            await node.PassAsync();
            Assert.Equal($"Your signing digital ID for {email} expires in 7 days", Assert.Single(smtp.MessagesTo(email), IsReminder).Subject);
            var listed = await RemindersListedAsync(node, email);
            Assert.Equal(["sent", "failed"], listed.Select(m => m.GetProperty("status").GetString()));
            Assert.Contains("no longer issues certificates for 'dropped.test'", listed[1].GetProperty("lastError").GetString());
        }, TwoDomains);

    [Fact]
    public Task A_certificate_released_from_hold_gets_the_reminder_it_is_due_once() => WithNodeAsync([30], async (node, smtp, clock) =>
    {
        // waited's reminder was queued while the SMTP server was down and its certificate was put on hold before it could be sent: it
        // was failed as for a revoked certificate, and after the release none was queued (its (serial, day) key was taken), so the
        // holder was never reminded. spanned was on hold over its reminder's day.
        var run = Guid.NewGuid().ToString("N")[..8];
        var waited = $"waited.{run}@example.test";
        var spanned = $"spanned.{run}@example.test";
        var (w, _) = await node.IssueAsync(waited, "signing");
        var (s, _) = await node.IssueAsync(spanned, "signing");
        await Http.EnsureStatus(await node.RevokeAsync(s.SerialNumber, "certificateHold"), HttpStatusCode.OK);
        await node.PassAsync();
        await smtp.WaitForMessagesToAsync(spanned); // the hold notice

        smtp.Stop();
        clock.Advance(w.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        var down = await node.PassAsync();
        Assert.Equal((1, 1), (down.Queued, down.Retried));
        await Http.EnsureStatus(await node.RevokeAsync(w.SerialNumber, "certificateHold"), HttpStatusCode.OK);
        await smtp.StartAsync();
        clock.Advance(TimeSpan.FromHours(2));
        await node.PassAsync();
        Assert.DoesNotContain(smtp.MessagesTo(waited), IsReminder);

        foreach (var serial in new[] { w.SerialNumber, s.SerialNumber })
            await Http.EnsureStatus(await node.Admin.PostAsync($"/api/v1/certificates/{serial}/release", null), HttpStatusCode.OK);
        clock.Advance(TimeSpan.FromHours(2));
        // Passes racing each other, as nodes do: each reminder once.
        await Task.WhenAll(node.PassAsync(), node.PassAsync(), node.PassAsync());
        await node.PassAsync();
        foreach (var email in new[] { waited, spanned })
        {
            Assert.Equal($"Your signing digital ID for {email} expires in 30 days", Assert.Single(smtp.MessagesTo(email), IsReminder).Subject);
            var listed = await node.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/notifications?kind=expiry-reminder&recipient={email}", Http.Json);
            Assert.Equal("sent", Assert.Single(listed.GetProperty("notifications").EnumerateArray()).GetProperty("status").GetString());
        }
    }, new Dictionary<string, string?> { ["Issuance:PolicyOids:0"] = CertPortal.Authority.Oids.PolicyMailboxValidatedMultipurpose });

    [Fact]
    public Task The_outbox_listing_says_why_a_reminder_waits_while_its_certificate_is_on_hold() => WithNodeAsync([30], async (node, smtp, clock) =>
    {
        // The outbox keeps such a reminder (it is sent after the release), but the API and the console listed it as queued and
        // due, with no error: an administrator saw a message that should have gone and had not, and no reason.
        var email = $"held.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (issued, _) = await node.IssueAsync(email, "signing");
        async Task<JsonElement> ListedAsync() => Assert.Single((await node.Admin.GetFromJsonAsync<JsonElement>(
            $"/api/v1/notifications?kind=expiry-reminder&recipient={email}", Http.Json)).GetProperty("notifications").EnumerateArray());

        smtp.Stop();
        clock.Advance(issued.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        var down = await node.PassAsync();
        Assert.Equal((1, 1), (down.Queued, down.Retried));
        var heldAt = clock.GetUtcNow();
        await Http.EnsureStatus(await node.RevokeAsync(issued.SerialNumber, "certificateHold"), HttpStatusCode.OK);
        await smtp.StartAsync();
        clock.Advance(TimeSpan.FromHours(2));
        await node.PassAsync();
        var lookedAt = clock.GetUtcNow();
        Assert.DoesNotContain(smtp.MessagesTo(email), IsReminder);

        var waiting = await ListedAsync();
        Assert.Equal("queued", waiting.GetProperty("status").GetString());
        var postponed = waiting.GetProperty("postponed").GetString();
        Assert.StartsWith("the certificate is on hold (since ", postponed);
        Assert.Contains("sent once it is released", postponed);
        var next = waiting.GetProperty("nextAttemptAt").GetDateTimeOffset();
        Assert.Equal(lookedAt + TimeSpan.FromHours(1), next); // Mail:RetryMaxDelay: when the outbox looks again

        var name = "outbox" + Guid.NewGuid().ToString("N")[..6];
        const string password = "a long console password for the outbox";
        await Http.EnsureStatus(await node.Admin.PostAsJsonAsync("/api/v1/accounts", new { name, displayName = name, role = "auditor", password }),
            HttpStatusCode.Created);
        using var console = await ConsoleSignIn.SignedInClientAsync(node.BaseUrl, name, password);
        var page = await console.GetStringAsync($"/admin/notifications?recipient={Uri.EscapeDataString(email)}");
        Assert.Contains($"postponed: the certificate is on hold (since {heldAt.UtcDateTime.ToString("u", System.Globalization.CultureInfo.InvariantCulture)})", page);
        Assert.Contains($"looked at again {next.UtcDateTime.ToString("u", System.Globalization.CultureInfo.InvariantCulture)}", page);

        // Released, it waits for nothing but the outbox's next look, and then goes.
        await Http.EnsureStatus(await node.Admin.PostAsync($"/api/v1/certificates/{issued.SerialNumber}/release", null), HttpStatusCode.OK);
        Assert.Equal(JsonValueKind.Null, (await ListedAsync()).GetProperty("postponed").ValueKind);
        clock.Advance(TimeSpan.FromHours(1));
        await node.PassAsync();
        Assert.Single(smtp.MessagesTo(email), IsReminder);
        var sent = await ListedAsync();
        Assert.Equal("sent", sent.GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, sent.GetProperty("postponed").ValueKind);
        Assert.DoesNotContain("postponed", await console.GetStringAsync($"/admin/notifications?recipient={Uri.EscapeDataString(email)}"));
    }, new Dictionary<string, string?>
    {
        ["Issuance:PolicyOids:0"] = CertPortal.Authority.Oids.PolicyMailboxValidatedMultipurpose,
        ["Mail:RetryMaxDelay"] = "01:00:00",
    });

    [Fact]
    public Task A_reminder_sent_on_the_last_day_after_a_long_hold_reads_right() => WithNodeAsync([30], async (node, smtp, clock) =>
    {
        // The hold is released half a day before the expiry: the reminder said "expires in 1 days", and was dated the day it was
        // queued, a month back, so a mail client sorted it among that month's mail while its text counted the days from today.
        var email = $"lastday.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (issued, _) = await node.IssueAsync(email, "signing");
        smtp.Stop();
        clock.Advance(issued.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        Assert.Equal(1, (await node.PassAsync()).Queued);
        await Http.EnsureStatus(await node.RevokeAsync(issued.SerialNumber, "certificateHold"), HttpStatusCode.OK);
        await smtp.StartAsync();
        clock.Advance(TimeSpan.FromHours(2));
        await node.PassAsync();
        Assert.DoesNotContain(smtp.MessagesTo(email), IsReminder);

        clock.Advance(issued.NotAfter.AddHours(-12) - clock.GetUtcNow());
        await Http.EnsureStatus(await node.Admin.PostAsync($"/api/v1/certificates/{issued.SerialNumber}/release", null), HttpStatusCode.OK);
        await node.PassAsync();
        var sentAt = clock.GetUtcNow();
        var reminder = Assert.Single(smtp.MessagesTo(email), IsReminder);
        Assert.Equal($"Your signing digital ID for {email} expires in 1 day", reminder.Subject);
        Assert.Contains(", in 1 day. After that", reminder.TextBody);
        Assert.Contains(", in 1 day. After that", reminder.HtmlBody);
        Assert.Equal(sentAt.AddTicks(-(sentAt.Ticks % TimeSpan.TicksPerSecond)), reminder.Date.ToUniversalTime());
    }, new Dictionary<string, string?> { ["Issuance:PolicyOids:0"] = CertPortal.Authority.Oids.PolicyMailboxValidatedMultipurpose });

    [Fact]
    public Task A_certificate_whose_renewal_was_revoked_gets_a_reminder_that_does_not_offer_renewal() => WithNodeAsync([30], async (node, smtp, clock) =>
    {
        // The renewal (a new key, say, that the holder lost) was revoked; the certificate it renewed is still valid and expires. Its
        // reminder was queued, then failed as "renewed", and the holder heard nothing. It renews once: its link would answer 409
        // "already renewed", so the reminder says to ask for an invitation, as with renewal switched off.
        Tool.Require("openssl", "openssl");
        var email = $"relapsed.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (old, key) = await node.IssueAsync(email, "signing");
        using var dir = new ToolDir("revoked-renewal");
        var (renewal, _) = await Renewal.RenewalRequests.RenewToNewKeyAsync(node.Client, dir, email, old, key);
        await Http.EnsureStatus(await node.RevokeAsync(renewal.SerialNumber, "unspecified"), HttpStatusCode.OK);
        await node.PassAsync();
        await smtp.WaitForMessagesToAsync(email); // the renewal's revocation notice

        clock.Advance(old.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
        await node.PassAsync();
        var reminder = Assert.Single(smtp.MessagesTo(email), IsReminder);
        Assert.Contains(old.SerialNumber, reminder.TextBody);
        Assert.DoesNotContain("/renew?serial=", reminder.TextBody);
        Assert.DoesNotContain("/renew?serial=", reminder.HtmlBody);
        Assert.Contains("ask your administrator for a new invitation", reminder.TextBody);
    }, new Dictionary<string, string?> { ["Renewal:OpensBeforeExpiry"] = "400.00:00:00" });

    /// <summary>A renewal on hold is not a valid successor, so the renewed certificate's reminder went out at once, telling a holder who
    /// had renewed to ask for an invitation. It now waits, as the reminder of a held certificate does: a released renewal serves the old
    /// certificate, whose reminder is then not sent; one revoked for good leaves the holder nothing else, and the reminder goes as for
    /// any revoked renewal (without the renewal link).</summary>
    [Fact]
    public Task A_reminder_waits_while_the_renewal_is_on_hold_and_goes_only_if_the_renewal_is_revoked_for_good() =>
        WithNodeAsync([30], async (node, smtp, clock) =>
        {
            Tool.Require("openssl", "openssl");
            var run = Guid.NewGuid().ToString("N")[..8];
            var released = $"held-released.{run}@example.test";
            var revoked = $"held-revoked.{run}@example.test";
            using var dir = new ToolDir("held-renewal");
            var old = new Dictionary<string, EnrollmentResponse>();
            var renewals = new Dictionary<string, string>();
            var issuedKeys = new Dictionary<string, SubscriberKeyPair>();
            foreach (var email in new[] { released, revoked })
            {
                var (issued, key) = await node.IssueAsync(email, "signing");
                (old[email], issuedKeys[email]) = (issued, key);
            }
            // Renewed two months later, so the renewals are not in the old certificates' reminder window themselves.
            clock.Advance(TimeSpan.FromDays(60));
            foreach (var email in new[] { released, revoked })
            {
                var (issued, key) = (old[email], issuedKeys[email]);
                var (renewal, _) = await Renewal.RenewalRequests.RenewToNewKeyAsync(node.Client, dir, email, issued, key);
                await Http.EnsureStatus(await node.RevokeAsync(renewal.SerialNumber, "certificateHold"), HttpStatusCode.OK);
                renewals[email] = renewal.SerialNumber;
            }
            await node.PassAsync();
            foreach (var email in new[] { released, revoked }) await smtp.WaitForMessagesToAsync(email); // the hold notices

            clock.Advance(old[released].NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
            await node.PassAsync();
            foreach (var email in new[] { released, revoked })
            {
                Assert.DoesNotContain(smtp.MessagesTo(email), IsReminder);
                var waiting = await ReminderAsync(node, email);
                Assert.Equal("queued", waiting.GetProperty("status").GetString());
                Assert.StartsWith("its renewal is on hold", waiting.GetProperty("postponed").GetString());
            }

            await Http.EnsureStatus(await node.Admin.PostAsync($"/api/v1/certificates/{renewals[released]}/release", null), HttpStatusCode.OK);
            await Http.EnsureStatus(await node.RevokeAsync(renewals[revoked], "affiliationChanged"), HttpStatusCode.OK);
            clock.Advance(TimeSpan.FromHours(2)); // past the postponement (Mail:RetryMaxDelay)
            await node.PassAsync();
            await node.PassAsync();

            Assert.DoesNotContain(smtp.MessagesTo(released), IsReminder);
            var dropped = await ReminderAsync(node, released);
            Assert.Equal("failed", dropped.GetProperty("status").GetString());
            Assert.Contains("was renewed before the reminder could be sent", dropped.GetProperty("lastError").GetString());
            var reminder = Assert.Single(smtp.MessagesTo(revoked), IsReminder);
            Assert.Contains(old[revoked].SerialNumber, reminder.TextBody);
            Assert.DoesNotContain("/renew?serial=", reminder.TextBody);
            Assert.Contains("ask your administrator for a new invitation", reminder.TextBody);
        }, new Dictionary<string, string?>
        {
            ["Renewal:OpensBeforeExpiry"] = "400.00:00:00",
            ["Renewal:MaxSignatureAge"] = "90.00:00:00", // the renewals are signed by the wall clock, two months behind the node's
            ["Issuance:PolicyOids:0"] = CertPortal.Authority.Oids.PolicyMailboxValidatedMultipurpose,
        });

    private static async Task<JsonElement> ReminderAsync(MailNode node, string email) =>
        Assert.Single((await node.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/notifications?kind=expiry-reminder&recipient={email}", Http.Json))
            .GetProperty("notifications").EnumerateArray());

    /// <summary>A chain of renewals may rely on its mailbox validation for <c>Renewal:MailboxValidationReuse</c> only (S/MIME BR
    /// 4.2.1); after that the renewal API answers 403. A reminder sent then must not offer the renewal link.</summary>
    [Fact]
    public Task A_reminder_for_a_certificate_whose_mailbox_validation_is_too_old_to_renew_on_asks_for_an_invitation() =>
        WithNodeAsync([30], async (node, smtp, clock) =>
        {
            var email = $"aged.{Guid.NewGuid().ToString("N")[..8]}@example.test";
            var (issued, _) = await node.IssueAsync(email, "signing");
            // 365-day certificates, validation good for 300 days: the 30-day reminder comes on day 335.
            clock.Advance(issued.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow());
            await node.PassAsync();
            var reminder = Assert.Single(smtp.MessagesTo(email), IsReminder);
            Assert.DoesNotContain("/renew?serial=", reminder.TextBody);
            Assert.DoesNotContain("/renew?serial=", reminder.HtmlBody);
            Assert.Contains("ask your administrator for a new invitation", reminder.TextBody);
        }, new Dictionary<string, string?> { ["Renewal:MailboxValidationReuse"] = "300.00:00:00" });

    /// <summary>Queued while the validation was still good and sent after it aged (the SMTP server was down meanwhile): the outbox
    /// decides at sending, as it does for the days left.</summary>
    [Fact]
    public Task A_reminder_that_waited_until_the_mailbox_validation_aged_is_sent_without_the_renewal_link() =>
        WithNodeAsync([30], async (node, smtp, clock) =>
        {
            var email = $"aging.{Guid.NewGuid().ToString("N")[..8]}@example.test";
            var (issued, _) = await node.IssueAsync(email, "signing");
            smtp.Stop();
            clock.Advance(issued.NotAfter.AddDays(-30).AddHours(1) - clock.GetUtcNow()); // day 335: validation (340 days) still good
            var down = await node.PassAsync();
            Assert.Equal((1, 0, 1), (down.Queued, down.Sent, down.Retried));
            await smtp.StartAsync();
            clock.Advance(TimeSpan.FromDays(10)); // day 345
            await node.PassAsync();
            var reminder = Assert.Single(smtp.MessagesTo(email), IsReminder);
            Assert.DoesNotContain("/renew?serial=", reminder.TextBody);
            Assert.Contains("ask your administrator for a new invitation", reminder.TextBody);
        }, new Dictionary<string, string?> { ["Renewal:MailboxValidationReuse"] = "340.00:00:00" });
}
