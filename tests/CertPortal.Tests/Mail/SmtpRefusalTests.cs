using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Mail;

/// <summary>A server that takes the recipient and then refuses the message itself for good (554 after DATA, as a content
/// filter does): that message is failed, not retried for ever, and the messages queued after it are sent.</summary>
public sealed class SmtpRefusalTests(MailApp app) : IClassFixture<MailApp>
{
    [Fact]
    public async Task A_message_refused_for_good_after_its_content_fails_alone_and_the_next_is_sent()
    {
        var run = Guid.NewGuid().ToString("N")[..8];
        var refused = $"{SmtpServer.RefusedAfterData}.{run}@example.test";
        var after = $"after-refusal.{run}@example.test";
        foreach (var email in new[] { refused, after })
            await Http.EnsureStatus(await app.Admin.PostAsJsonAsync("/api/v1/tokens", new { email, profile = "signing", send = true }), HttpStatusCode.Created);

        Assert.Single(await app.Smtp.WaitForMessagesToAsync(after));
        var deadline = DateTime.UtcNow.AddSeconds(30);
        JsonElement notice;
        while (true)
        {
            var page = await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/notifications?recipient={Uri.EscapeDataString(refused)}", Http.Json);
            notice = Assert.Single(page.GetProperty("notifications").EnumerateArray());
            if (notice.GetProperty("status").GetString() == "failed" || DateTime.UtcNow > deadline) break;
            await Task.Delay(200);
        }
        Assert.Equal("failed", notice.GetProperty("status").GetString());
        Assert.Contains("554", notice.GetProperty("lastError").GetString());
        Assert.Equal(1, notice.GetProperty("attempts").GetInt32());
        Assert.Empty(app.Smtp.MessagesTo(refused));
    }
}
