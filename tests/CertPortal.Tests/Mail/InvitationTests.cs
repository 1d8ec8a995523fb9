using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Mail;

/// <summary>Invitations through a real SMTP server: the person reads the message, follows the link and enrols.</summary>
public sealed partial class InvitationTests(MailApp app) : IClassFixture<MailApp>
{
    private static string NewMailbox(string p) => $"{p}.{Guid.NewGuid().ToString("N")[..8]}@example.test";

    [Fact]
    public async Task An_invitation_mails_the_link_the_person_enrols_with_it_and_no_link_is_left_in_the_response_database_or_log()
    {
        var email = NewMailbox("invited");
        var r = await app.Admin.PostAsJsonAsync("/api/v1/tokens", new { email, displayName = "Ines Invited", profile = "signing", validHours = 24, send = true });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        var created = await r.Content.ReadFromJsonAsync<JsonElement>(Http.Json);
        Assert.Equal(JsonValueKind.Null, created.GetProperty("token").ValueKind);
        Assert.Equal(JsonValueKind.Null, created.GetProperty("enrollmentUrl").ValueKind);
        Assert.True(created.GetProperty("notificationId").GetInt64() > 0);

        var message = Assert.Single(await app.Smtp.WaitForMessagesToAsync(email));
        Assert.Equal(MailApp.Organization, message.From.Mailboxes.Single().Name);
        Assert.Equal(MailApp.From, message.From.Mailboxes.Single().Address);
        Assert.Equal("Ines Invited", message.To.Mailboxes.Single().Name);
        Assert.Contains(email, message.Subject);
        Assert.Equal("auto-generated", message.Headers["Auto-Submitted"]);
        var link = EnrollmentLink(message.TextBody);
        // The token is in the link's fragment, which no browser sends to a server (so no access log records it).
        Assert.StartsWith($"{app.BaseUrl}/enroll#token=cpt_", link);
        Assert.Contains($"href=\"{WebUtility.HtmlEncode(link)}\"", message.HtmlBody);

        // Queuing, sealing and sending logged nothing of the link (checked before the link is requested: ASP.NET Core's
        // own request log, at Information for Microsoft.AspNetCore, which appsettings.json keeps at Warning, has the URL).
        var token = Uri.UnescapeDataString(new Uri(link).Fragment["#token=".Length..]);
        Assert.DoesNotContain(app.Logs, l => l.Contains(token["cpt_".Length..], StringComparison.Ordinal));
        Assert.Contains(app.Logs, l => l.Contains($"to {email}", StringComparison.Ordinal));

        // What a server sees of the link is /enroll alone: the paste form, nothing of the person (the browser posts the
        // fragment's token to the page, see the browser tests); the token in it enrols once.
        var page = await app.Client.GetStringAsync(link);
        Assert.Contains("id=\"token-form\"", page);
        Assert.DoesNotContain(email, page);
        var cert = await app.EnrollAsync(token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email));
        Assert.Equal("valid", (await app.GetCertificateAsync(cert.SerialNumber)).Status);

        // The outbox shows it sent, without the link; the sealed link is gone from the row and was never stored in clear.
        var listed = await app.Admin.GetStringAsync($"/api/v1/notifications?recipient={Uri.EscapeDataString(email)}");
        var entry = JsonDocument.Parse(listed).RootElement.GetProperty("notifications").EnumerateArray().Single();
        Assert.Equal("sent", entry.GetProperty("status").GetString());
        Assert.Equal("invitation", entry.GetProperty("kind").GetString());
        Assert.DoesNotContain("cpt_", listed);
        using (var scope = app.Services.CreateScope())
        {
            var row = await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().OutboundMessages.SingleAsync(m => m.Recipient == email);
            Assert.Null(row.SealedLink);
            Assert.DoesNotContain(token, row.Model);
        }
        Assert.False(DatabaseFilesContain(token), "the token appears in the database files");
    }

    [Fact]
    public async Task With_showLink_the_admin_also_gets_the_link_that_was_mailed()
    {
        var email = NewMailbox("shown");
        var r = await app.Admin.PostAsJsonAsync("/api/v1/tokens", new { email, profile = "dual", send = true, showLink = true });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        var created = (await r.Content.ReadFromJsonAsync<TokenResponse>(Http.Json))!;
        var message = Assert.Single(await app.Smtp.WaitForMessagesToAsync(email));
        Assert.Equal(created.EnrollmentUrl, EnrollmentLink(message.TextBody));
    }

    [Fact]
    public async Task While_smtp_is_down_a_bulk_invitation_stays_queued_then_every_message_arrives_once()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        var people = Enumerable.Range(0, 200).Select(i => new { email = $"bulk{i}.{run}@example.test", displayName = $"Person {i}" }).ToList<object?>();
        people.Insert(50, new { email = "not a mailbox", displayName = "Broken" });
        people.Insert(100, new { email = $"badprofile.{run}@example.test", profile = "everything" });
        app.Smtp.Stop();
        try
        {
            var revokedEmail = NewMailbox("revoked-before-sent");
            var revokedInvite = await app.Admin.PostAsJsonAsync("/api/v1/tokens", new { email = revokedEmail, profile = "signing", send = true });
            await Http.EnsureStatus(revokedInvite, HttpStatusCode.Created);
            var revokedId = (await revokedInvite.Content.ReadFromJsonAsync<JsonElement>(Http.Json)).GetProperty("id").GetGuid();

            var started = DateTime.UtcNow;
            var r = await app.Admin.PostAsJsonAsync("/api/v1/invitations", new { invitations = people, profile = "encryption", validHours = 48 });
            await Http.EnsureStatus(r, HttpStatusCode.OK);
            Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(60), "the call does not wait for SMTP");
            var result = await r.Content.ReadFromJsonAsync<JsonElement>(Http.Json);
            Assert.Equal(200, result.GetProperty("invited").GetInt32());
            Assert.Equal(2, result.GetProperty("failed").GetInt32());
            var rows = result.GetProperty("results").EnumerateArray().ToList();
            Assert.Equal(202, rows.Count);
            Assert.Equal("failed", rows[50].GetProperty("status").GetString());
            Assert.Equal(51, rows[50].GetProperty("row").GetInt32());
            Assert.Contains("profile", rows[100].GetProperty("error").GetString());
            Assert.All(rows.Where(x => x.GetProperty("status").GetString() == "invited"), x => Assert.NotEqual(JsonValueKind.Null, x.GetProperty("tokenId").ValueKind));

            // Revoked before it could be sent: the invitation is given up, not mailed with a dead link.
            await Http.EnsureStatus(await app.Admin.DeleteAsync($"/api/v1/tokens/{revokedId}"), HttpStatusCode.OK);

            // Down: the outbox keeps trying and says why.
            var failing = await WaitForNotificationAsync(n => n.GetProperty("attempts").GetInt32() > 0 && n.GetProperty("status").GetString() == "queued");
            Assert.Contains($"127.0.0.1:{app.Smtp.Port}", failing.GetProperty("lastError").GetString());
            Assert.DoesNotContain(app.Smtp.Messages(), m => m.To.Mailboxes.Any(a => a.Address.Contains(run, StringComparison.Ordinal)));

            await app.Smtp.StartAsync();
            var expected = people.Count - 2;
            await app.Smtp.WaitForAsync(all => all.Count(m => m.To.Mailboxes.Single().Address.Contains(run, StringComparison.Ordinal)) >= expected, 120);
            await Task.Delay(1500); // a duplicate would arrive by now
            var received = app.Smtp.Messages().Select(m => m.To.Mailboxes.Single().Address).Where(a => a.Contains(run, StringComparison.Ordinal)).ToList();
            Assert.Equal(expected, received.Count);
            Assert.Equal(expected, received.Distinct().Count());
            Assert.All(app.Smtp.MessagesTo($"bulk7.{run}@example.test"), m => Assert.Contains("receiving encrypted mail", m.TextBody));

            Assert.Empty(app.Smtp.MessagesTo(revokedEmail));
            var given = await WaitForNotificationAsync(n => n.GetProperty("recipient").GetString() == revokedEmail && n.GetProperty("status").GetString() == "failed");
            Assert.Contains("revoked", given.GetProperty("lastError").GetString());
        }
        finally
        {
            await EnsureSmtpRunningAsync();
        }
    }

    /// <summary>A CSV or list that names someone twice (pasted twice, or once as "Dup.Person@" and once as "dup.person@") invited them
    /// twice: two live links and two messages. The repeat is now a failed row that names the row which invited the person; the same
    /// mailbox for another profile is another invitation.</summary>
    [Fact]
    public async Task A_bulk_invitation_naming_a_person_twice_invites_them_once_and_says_which_row_did()
    {
        var id = Guid.NewGuid().ToString("N")[..8];
        var email = $"dup.person.{id}@example.test";
        var r = await app.Admin.PostAsJsonAsync("/api/v1/invitations", new
        {
            invitations = new object[]
            {
                new { email, displayName = "Dup Person" },
                new { email = $"Dup.Person.{id}@Example.TEST", displayName = "Dup Person" },
                new { email = $" {email} ", displayName = "Dup Person" },
                new { email, displayName = "Dup Person", profile = "encryption" },
            },
            profile = "signing",
        });
        await Http.EnsureStatus(r, HttpStatusCode.OK);
        var result = await r.Content.ReadFromJsonAsync<JsonElement>(Http.Json);
        var rows = result.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(["invited", "failed", "failed", "invited"], rows.Select(x => x.GetProperty("status").GetString()));
        Assert.Equal(2, result.GetProperty("invited").GetInt32());
        Assert.Equal(2, result.GetProperty("failed").GetInt32());
        Assert.All(rows.Where(x => x.GetProperty("status").GetString() == "failed"), x => Assert.Contains("row 1", x.GetProperty("error").GetString()));

        var tokens = await app.Admin.GetFromJsonAsync<JsonElement[]>($"/api/v1/tokens?email={email}", Http.Json) ?? [];
        Assert.Equal(["encryption", "signing"], tokens.Select(t => t.GetProperty("profile").GetString()).Order());
        await app.Smtp.WaitForMessagesToAsync(email, count: 2);
        await Task.Delay(1500); // a third would arrive by now
        Assert.Equal(2, app.Smtp.MessagesTo(email).Count);
    }

    private Task<HttpResponseMessage> InviteAsync(object list, string? idempotencyKey) => SendListAsync(app.Admin, list, idempotencyKey);

    /// <summary><c>POST /api/v1/invitations</c> with the list, and the <c>Idempotency-Key</c> header when one is given.</summary>
    public static async Task<HttpResponseMessage> SendListAsync(HttpClient admin, object list, string? idempotencyKey)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/v1/invitations") { Content = JsonContent.Create(list) };
        if (idempotencyKey is not null) request.Headers.TryAddWithoutValidation("Idempotency-Key", idempotencyKey);
        return await admin.SendAsync(request);
    }

    private async Task<int> TokenCountAsync(string email) => (await app.Admin.GetFromJsonAsync<JsonElement[]>($"/api/v1/tokens?email={email}", Http.Json) ?? []).Length;

    [Fact]
    public async Task A_bulk_invitation_sent_again_with_its_idempotency_key_invites_only_the_rows_not_yet_invited()
    {
        var id = Guid.NewGuid().ToString("N")[..8];
        var emails = Enumerable.Range(1, 3).Select(i => $"retry{i}.{id}@example.test").ToList();
        var list = new { invitations = emails.Select(e => new { email = e, displayName = "Retry Person" }).ToArray(), profile = "signing" };
        var key = Guid.NewGuid().ToString();

        var first = await InviteAsync(list, key);
        await Http.EnsureStatus(first, HttpStatusCode.OK);
        var firstRows = (await first.Content.ReadFromJsonAsync<JsonElement>(Http.Json)).GetProperty("results").EnumerateArray().ToList();
        Assert.All(firstRows, r => Assert.Equal("invited", r.GetProperty("status").GetString()));

        // The answer was lost: the same list with the same key gets the same answer, and nobody a second link or message.
        var again = await InviteAsync(list, $"\"{key}\""); // as a structured-field string, as the draft writes it
        await Http.EnsureStatus(again, HttpStatusCode.OK);
        var againRows = (await again.Content.ReadFromJsonAsync<JsonElement>(Http.Json)).GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(firstRows.Select(r => r.ToString()), againRows.Select(r => r.ToString()));
        foreach (var e in emails) Assert.Equal(1, await TokenCountAsync(e));

        // The connection broke after row 2 had committed: row 3's record (written in its invitation's transaction) is not there,
        // so a retry invites row 3 and answers rows 1 and 2 as before.
        using (var scope = app.Services.CreateScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            var third = firstRows[2].GetProperty("tokenId").GetGuid();
            Assert.Equal(1, await db.InvitationBatchRows.Where(r => r.TokenId == third).ExecuteDeleteAsync());
        }
        var resumed = (await (await InviteAsync(list, key)).Content.ReadFromJsonAsync<JsonElement>(Http.Json)).GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(firstRows[..2].Select(r => r.ToString()), resumed[..2].Select(r => r.ToString()));
        Assert.Equal("invited", resumed[2].GetProperty("status").GetString());
        Assert.NotEqual(firstRows[2].GetProperty("tokenId").GetGuid(), resumed[2].GetProperty("tokenId").GetGuid());
        Assert.Equal(1, await TokenCountAsync(emails[0]));

        // The key with another list: refused, nothing created; a key that is no key: 400.
        var other = new { invitations = new[] { new { email = $"other.{id}@example.test", displayName = "Other" } }, profile = "signing" };
        await Http.AssertProblem(await InviteAsync(other, key), HttpStatusCode.UnprocessableEntity);
        Assert.Equal(0, await TokenCountAsync($"other.{id}@example.test"));
        await Http.AssertProblem(await InviteAsync(other, "bad key with spaces"), HttpStatusCode.BadRequest);
        await Http.AssertProblem(await InviteAsync(other, new string('k', 256)), HttpStatusCode.BadRequest);
        Assert.Equal(0, await TokenCountAsync($"other.{id}@example.test"));

        // Without a key a list is a new list: the person is invited again (a second live link), as before.
        await Http.EnsureStatus(await InviteAsync(other, null), HttpStatusCode.OK);
        await Http.EnsureStatus(await InviteAsync(other, null), HttpStatusCode.OK);
        Assert.Equal(2, await TokenCountAsync($"other.{id}@example.test"));
    }

    [Fact]
    public async Task Retries_of_a_bulk_invitation_sent_while_it_runs_invite_each_person_once()
    {
        var id = Guid.NewGuid().ToString("N")[..8];
        var emails = Enumerable.Range(1, 12).Select(i => $"burst{i}.{id}@example.test").ToList();
        var list = new { invitations = emails.Select(e => new { email = e, displayName = "Burst Person" }).ToArray(), profile = "encryption" };
        var key = Guid.NewGuid().ToString();
        // A client that gives up and sends again, five times, while the first attempt still runs.
        var responses = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ => InviteAsync(list, key)));
        Assert.All(responses, r => Assert.True(r.StatusCode is HttpStatusCode.OK or HttpStatusCode.Conflict, $"{(int)r.StatusCode}"));
        Assert.Contains(responses, r => r.StatusCode == HttpStatusCode.OK);
        foreach (var e in emails) Assert.Equal(1, await TokenCountAsync(e));
        // Once it has finished, a retry answers every row.
        var last = await InviteAsync(list, key);
        await Http.EnsureStatus(last, HttpStatusCode.OK);
        Assert.Equal(12, (await last.Content.ReadFromJsonAsync<JsonElement>(Http.Json)).GetProperty("invited").GetInt32());
        foreach (var e in emails) Assert.Equal(1, await TokenCountAsync(e));
    }

    private async Task EnsureSmtpRunningAsync()
    {
        try
        {
            using var probe = new System.Net.Sockets.TcpClient();
            await probe.ConnectAsync(IPAddress.Loopback, app.Smtp.Port);
        }
        catch (System.Net.Sockets.SocketException)
        {
            await app.Smtp.StartAsync();
        }
    }

    private async Task<JsonElement> WaitForNotificationAsync(Func<JsonElement, bool> match, int seconds = 60)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var page = await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/notifications?pageSize=500", Http.Json);
            var found = page.GetProperty("notifications").EnumerateArray().Where(match).ToList();
            if (found.Count > 0) return found[0];
            if (DateTime.UtcNow > deadline) throw new TimeoutException("no such notification: " + page);
            await Task.Delay(200);
        }
    }

    private bool DatabaseFilesContain(string text)
    {
        var needle = Encoding.UTF8.GetBytes(text);
        return Directory.GetFiles(app.DataDirectory, "certportal.db*").Any(f =>
        {
            using var stream = new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            return copy.ToArray().AsSpan().IndexOf(needle) >= 0;
        });
    }

    public static string EnrollmentLink(string? text) =>
        LinkPattern().Match(text ?? "") is { Success: true } m ? m.Value : throw new Xunit.Sdk.XunitException($"no enrollment link in: {text}");

    [GeneratedRegex(@"https?://\S+/enroll#token=\S+")]
    private static partial Regex LinkPattern();
}

/// <summary>Without mail configured, asking to send is refused with the setting's name, and nothing is created.</summary>
public sealed class InvitationWithoutMailTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Fact]
    public async Task Send_without_mail_configured_is_a_422_naming_the_setting_and_creates_no_token()
    {
        const string email = "nomail@example.test";
        var problem = await Http.AssertProblem(await app.Admin.PostAsJsonAsync("/api/v1/tokens", new { email, profile = "signing", send = true }),
            HttpStatusCode.UnprocessableEntity);
        Assert.Contains("CertPortal:Mail:Enabled", problem.GetProperty("detail").GetString());
        await Http.AssertProblem(await app.Admin.PostAsJsonAsync("/api/v1/invitations", new { invitations = new[] { new { email } } }),
            HttpStatusCode.UnprocessableEntity);
        Assert.Empty(await app.Admin.GetFromJsonAsync<JsonElement[]>($"/api/v1/tokens?email={email}", Http.Json) ?? []);
        await Http.AssertProblem(await app.Admin.GetAsync("/api/v1/notifications?status=lost"), HttpStatusCode.BadRequest);
    }
}
