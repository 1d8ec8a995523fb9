using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using CertPortal.Security;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Portal;

/// <summary>The console's certificate page takes the serial as people paste it (colons, lower case), as the revocation it
/// posts does: a revocation through such an address was made, and the page then answered "not found".</summary>
public sealed class CertificatePageTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    private const string Password = "right password 1234";

    [Fact]
    public async Task Revoking_on_the_page_of_a_pasted_serial_shows_the_certificate_revoked()
    {
        var name = "pasting-" + Guid.NewGuid().ToString("N")[..6];
        await app.CreateAccountAsync(name, Roles.Administrator, Password);
        using var console = await ConsoleSignIn.SignedInClientAsync(app.BaseUrl, name, Password);
        var (cert, _) = await app.IssueAsync($"pasted.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing");
        var pasted = string.Join(":", cert.SerialNumber.Chunk(2).Select(c => new string(c))).ToLowerInvariant();

        var token = await ConsoleSignIn.AntiforgeryTokenAsync(console, $"/admin/certificates/{pasted}");
        var r = await console.PostAsync($"/admin/certificates/{pasted}?handler=Revoke", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["reason"] = "superseded", ["confirm"] = "true", ["__RequestVerificationToken"] = token,
        }));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Contains("The certificate is revoked", await r.Content.ReadAsStringAsync());
        var status = (await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/certificates/{cert.SerialNumber}", Http.Json)).GetProperty("status").GetString();
        Assert.Equal("revoked", status);
    }

    /// <summary>The page shows what the API does about renewal: when the mailbox was validated (<c>mailboxValidatedAt</c>), and until
    /// when the chain may be renewed on that validation (<c>Renewal:MailboxValidationReuse</c> after it, 398 days by default). It showed
    /// neither, so an administrator asked why a renewal was refused as "too old" had to read the API.</summary>
    [Fact]
    public async Task The_certificate_page_shows_when_the_mailbox_was_validated_and_until_when_the_chain_renews()
    {
        var name = "reading-" + Guid.NewGuid().ToString("N")[..6];
        await app.CreateAccountAsync(name, Roles.Auditor, Password);
        using var console = await ConsoleSignIn.SignedInClientAsync(app.BaseUrl, name, Password);
        var (cert, _) = await app.IssueAsync($"validated.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing");
        var validatedAt = (await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/certificates/{cert.SerialNumber}", Http.Json))
            .GetProperty("mailboxValidatedAt").GetDateTimeOffset();

        var page = await console.GetStringAsync($"/admin/certificates/{cert.SerialNumber}");
        Assert.Matches($"<dt>Mailbox validated</dt><dd id=\"mailbox-validated\"><time datetime=\"[^\"]+\" data-local>" +
            Regex.Escape(validatedAt.ToString("u")), page);
        var renewableUntil = validatedAt + TimeSpan.FromDays(398);
        Assert.Matches($"<dt>Renewable until</dt><dd id=\"renewable-until\"><time datetime=\"[^\"]+\" data-local>" +
            Regex.Escape(renewableUntil.ToString("u")), page);
    }
}
