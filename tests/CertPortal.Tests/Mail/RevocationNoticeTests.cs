using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Mail;

/// <summary>A revocation's reason may become keyCompromise after the fact (an admin learns of the compromise, or the key is
/// blocked and its certificates already revoked for another reason follow). With mail on, each such change queues a notice
/// of its own in the change's transaction; one keyed like the first made that transaction fail (500) and the key stayed
/// unblocked.</summary>
public sealed class RevocationNoticeTests(MailApp app) : IClassFixture<MailApp>
{
    private static string Mailbox(string prefix) => $"{prefix}.{Guid.NewGuid().ToString("N")[..8]}@example.test";

    private async Task<bool> BlockedAsync(string serial)
    {
        var blocked = await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/blocked-keys", Http.Json);
        return blocked.EnumerateArray().Any(k => k.GetProperty("source").GetString() == $"certificate:{serial}");
    }

    [Fact]
    public async Task A_revocation_that_becomes_keyCompromise_is_answered_blocks_the_key_and_tells_the_holder_again()
    {
        var person = Mailbox("reason");
        var (cert, _) = await app.IssueAsync(person, "dual");
        await Http.EnsureStatus(await app.RevokeAsync(cert.SerialNumber, "superseded"), HttpStatusCode.OK);
        var first = Assert.Single(await app.Smtp.WaitForMessagesToAsync(person));
        Assert.DoesNotContain("compromised", first.TextBody ?? "");

        await Http.EnsureStatus(await app.RevokeAsync(cert.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
        Assert.True(await BlockedAsync(cert.SerialNumber));
        var notices = await app.Smtp.WaitForMessagesToAsync(person, 2);
        Assert.Contains("compromised", notices[1].TextBody ?? "");

        // Said once: the same revocation again queues nothing.
        await Http.EnsureStatus(await app.RevokeAsync(cert.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
        await Task.Delay(1000);
        Assert.Equal(2, app.Smtp.MessagesTo(person).Count);
    }

    [Fact]
    public async Task Blocking_a_key_whose_certificate_was_revoked_for_another_reason_is_answered_and_tells_the_holder()
    {
        var person = Mailbox("blocked");
        var (cert, key) = await app.IssueAsync(person, "dual");
        await Http.EnsureStatus(await app.RevokeAsync(cert.SerialNumber, "cessationOfOperation"), HttpStatusCode.OK);
        Assert.Single(await app.Smtp.WaitForMessagesToAsync(person));

        var r = await app.Admin.PostAsJsonAsync("/api/v1/blocked-keys", new { pem = key.PrivateKeyPem, comment = "found on a share" });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        var notices = await app.Smtp.WaitForMessagesToAsync(person, 2);
        Assert.Contains("compromised", notices[1].TextBody ?? "");
    }
}
