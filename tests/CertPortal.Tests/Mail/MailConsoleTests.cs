using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
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

    [Fact]
    public async Task A_csv_form_sent_twice_invites_each_person_once_and_shows_the_results_again()
    {
        using var console = await AdminConsoleAsync();
        var run = Guid.NewGuid().ToString("N")[..6];
        var shown = await console.GetStringAsync("/admin/invitations");
        var key = SubmissionKeyIn(shown);
        var csv = $"twice1.{run}@example.test,One\ntwice2.{run}@example.test,Two\n";
        async Task<string> SendAsync(string csvText)
        {
            using var form = new MultipartFormDataContent
            {
                { new ByteArrayContent(Encoding.UTF8.GetBytes(csvText)), "Csv", "people.csv" },
                { new StringContent("signing"), "Profile" },
                { new StringContent("24"), "ValidHours" },
                { new StringContent(key), "SubmissionKey" },
                { new StringContent(await ConsoleSignIn.AntiforgeryTokenAsync(console, "/admin/invitations")), "__RequestVerificationToken" },
            };
            var response = await console.PostAsync("/admin/invitations", form);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return await response.Content.ReadAsStringAsync();
        }

        // A double click, or the browser's "resend" on reload: the same form with the same key.
        var first = await SendAsync(csv);
        var second = await SendAsync(csv);
        Assert.Contains("2 invited, 0 failed", first);
        Assert.Contains("2 invited, 0 failed", second);
        foreach (var who in new[] { "twice1", "twice2" })
        {
            var tokens = await app.Admin.GetFromJsonAsync<JsonElement[]>($"/api/v1/tokens?email={who}.{run}@example.test", Http.Json) ?? [];
            Assert.Single(tokens);
        }
        // The page it answers with carries a new key: the next file sent from it is a new list.
        Assert.NotEqual(key, SubmissionKeyIn(second));
        // An old page's key with another file: said so in words, nothing invited.
        var other = await SendAsync($"twice3.{run}@example.test,Three\n");
        Assert.Contains("already used to send another list", other);
        Assert.Empty(await app.Admin.GetFromJsonAsync<JsonElement[]>($"/api/v1/tokens?email=twice3.{run}@example.test", Http.Json) ?? []);
    }

    private static string SubmissionKeyIn(string html) =>
        System.Text.RegularExpressions.Regex.Match(html, "name=\"SubmissionKey\" value=\"([0-9a-f]{32})\"") is { Success: true } m
            ? m.Groups[1].Value : throw new Xunit.Sdk.XunitException("no SubmissionKey in the page");
}
