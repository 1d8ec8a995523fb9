using System.Net;
using System.Net.Http.Json;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Standards;

/// <summary>One mailbox validator for tokens, CSR checks and look-ups: what RFC 5321 and IDNA allow for an
/// rfc822Name, nothing else.</summary>
public sealed class MailboxTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Theory]
    [InlineData("alice@example.com", "alice@example.com")]
    [InlineData("  Alice.Smith+tag@Example.COM ", "Alice.Smith+tag@example.com")]
    [InlineData("o'brien@mail.example.co.uk", "o'brien@mail.example.co.uk")]
    [InlineData("a!#$%&'*+-/=?^_`{|}~z@example.com", "a!#$%&'*+-/=?^_`{|}~z@example.com")]
    [InlineData("x@b-c.123.example", "x@b-c.123.example")]
    [InlineData("alice@bücher.example", "alice@xn--bcher-kva.example")]
    [InlineData("alice@XN--BCHER-KVA.example", "alice@xn--bcher-kva.example")]
    public void Mailboxes_that_rfc_5321_and_idna_allow_are_accepted_and_normalised(string input, string expected)
    {
        Assert.True(Mailbox.TryNormalize(input, out var mailbox, out var error), error);
        Assert.Equal(expected, mailbox);
    }

    [Theory]
    [InlineData("alice@[127.0.0.1]", "address literal")]
    [InlineData("alice@[IPv6:::1]", "address literal")]
    [InlineData("alice@127.0.0.1", "IP address")]
    [InlineData("alice@-example.com", "host name")]
    [InlineData("alice@example-.com", "host name")]
    [InlineData("alice@mail.-example.com", "host name")]
    [InlineData("alice@exa_mple.com", "host name")]
    [InlineData("alice@ab--cd.example", "reserved")]
    [InlineData("alice@xn--zz.example", "host name")]
    [InlineData("alice@localhost", "two labels")]
    [InlineData("alice@example..com", "host name")]
    [InlineData("alice@example.com.", "two labels")]
    [InlineData(".alice@example.com", "single dots")]
    [InlineData("al..ice@example.com", "single dots")]
    [InlineData("alice.@example.com", "single dots")]
    [InlineData("al(ice)@example.com", "single dots")]
    [InlineData("\"alice\"@example.com", "quoted")]
    [InlineData("jörg@example.com", "SMTPUTF8")]
    [InlineData("a b@example.com", "local@domain")]
    [InlineData("alice@@example.com", "local@domain")]
    [InlineData("Bob <bob@example.com>", "local@domain")]
    [InlineData("@example.com", "local@domain")]
    [InlineData("alice@", "local@domain")]
    public void Non_mailboxes_are_refused_with_the_reason(string input, string reason)
    {
        Assert.False(Mailbox.TryNormalize(input, out _, out var error));
        Assert.Contains(reason, error, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Local_parts_over_64_characters_are_refused()
    {
        Assert.True(Mailbox.TryNormalize(new string('a', 64) + "@example.com", out _, out _));
        Assert.False(Mailbox.TryNormalize(new string('a', 65) + "@example.com", out _, out var error));
        Assert.Contains("64", error);
    }

    [Fact]
    public void Allowed_domains_match_in_unicode_or_a_labels()
    {
        Assert.True(Mailbox.DomainAllowed("alice@xn--bcher-kva.example", ["bücher.example"]));
        Assert.True(Mailbox.DomainAllowed("alice@xn--bcher-kva.example", ["XN--BCHER-KVA.example"]));
        Assert.False(Mailbox.DomainAllowed("alice@xn--bcher-kva.example", ["example"]));
    }

    [Theory]
    [InlineData("alice@[127.0.0.1]")]
    [InlineData("alice@-example.com")]
    public async Task Tokens_and_lookups_refuse_what_is_not_a_mailbox(string email)
    {
        var r = await app.Admin.PostAsJsonAsync("/api/v1/tokens", new { email, displayName = "Alice", profile = "signing" });
        await Http.AssertProblem(r, HttpStatusCode.UnprocessableEntity);
        var lookup = await app.Client.GetAsync($"/api/v1/directory/{Uri.EscapeDataString(email)}/certificates");
        await Http.AssertProblem(lookup, HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task An_internationalised_domain_is_issued_in_its_a_label_form()
    {
        var token = await app.CreateTokenAsync("alice@bücher.example", "signing");
        Assert.Equal("alice@xn--bcher-kva.example", token.Email);
        var key = SubscriberKeyPair.Generate("EC-P256");
        var cert = await app.EnrollAsync(token.Token, key.CreateCsrPem("alice@xn--bcher-kva.example"));
        using var x509 = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(cert.CertificatePem);
        Assert.Contains("alice@xn--bcher-kva.example", x509.Subject);
    }
}
