using System.Net;
using System.Net.Http.Json;
using System.Text;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Mail;

/// <summary>The console's side of mail: the "send by e-mail" checkbox, the CSV upload, the Notifications page.</summary>
public sealed class MailConsoleTests(MailApp app) : IClassFixture<MailApp>
{
    private async Task<HttpClient> AdminConsoleAsync()
    {
        var name = "mailadmin" + Guid.NewGuid().ToString("N")[..6];
        const string password = "a long console password for mail";
        await Http.EnsureStatus(await app.Admin.PostAsJsonAsync("/api/v1/accounts", new { name, displayName = name, role = "administrator", password }),
            HttpStatusCode.Created);
        return await ConsoleSignIn.SignedInClientAsync(app.BaseUrl, name, password);
    }

    [Fact]
    public async Task The_token_form_mails_the_link_without_showing_it_and_a_csv_upload_invites_each_line()
    {
        using var console = await AdminConsoleAsync();
        var run = Guid.NewGuid().ToString("N")[..6];

        var single = $"form.{run}@example.test";
        var page = await console.PostAsync("/admin/tokens?handler=Create", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["Email"] = single, ["DisplayName"] = "Form Person", ["Profile"] = "signing", ["ValidHours"] = "24", ["Send"] = "true",
            ["__RequestVerificationToken"] = await ConsoleSignIn.AntiforgeryTokenAsync(console, "/admin/tokens"),
        }));
        var html = await page.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("is being sent to", html);
        Assert.DoesNotContain("cpt_", html);
        var mailed = Assert.Single(await app.Smtp.WaitForMessagesToAsync(single));
        Assert.StartsWith($"{app.BaseUrl}/enroll#token=cpt_", InvitationTests.EnrollmentLink(mailed.TextBody));

        var csv = $"""
            email,displayName,profile,validHours
            csv1.{run}@example.test,"Doe, Jane",encryption,48
            csv2.{run}@example.test,John Roe,,

            not-a-mailbox,Nobody,,
            csv3.{run}@example.test,,signing,many
            """;
        using var form = new MultipartFormDataContent
        {
            { new ByteArrayContent(Encoding.UTF8.GetBytes(csv)), "Csv", "people.csv" },
            { new StringContent("dual"), "Profile" },
            { new StringContent("72"), "ValidHours" },
            { new StringContent(await ConsoleSignIn.AntiforgeryTokenAsync(console, "/admin/invitations")), "__RequestVerificationToken" },
        };
        var upload = await console.PostAsync("/admin/invitations", form);
        var result = await upload.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, upload.StatusCode);
        Assert.Contains("2 invited, 2 failed", result);
        Assert.Contains("validHours must be between", result);

        var jane = Assert.Single(await app.Smtp.WaitForMessagesToAsync($"csv1.{run}@example.test"));
        Assert.Equal("Doe, Jane", jane.To.Mailboxes.Single().Name);
        Assert.Contains("receiving encrypted mail", jane.TextBody);
        Assert.Contains("signing mail and receiving encrypted mail", Assert.Single(await app.Smtp.WaitForMessagesToAsync($"csv2.{run}@example.test")).TextBody);

        var outbox = await console.GetStringAsync($"/admin/notifications?recipient=csv1.{run}@example.test");
        Assert.Contains($"csv1.{run}@example.test", outbox);
        Assert.DoesNotContain("cpt_", outbox);
    }
}
