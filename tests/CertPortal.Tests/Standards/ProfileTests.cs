using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Standards;

/// <summary>The default configuration: mailbox-validated strict certificates, which may not be held.</summary>
public sealed class StrictProfileTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Fact]
    public async Task A_hold_on_a_strict_certificate_is_refused_saying_why_and_changes_nothing()
    {
        var (issued, _) = await app.IssueAsync("strict.hold@example.test", "signing");
        var crlBefore = await app.Client.GetByteArrayAsync("/crl/issuing.crl");
        var problem = await Http.AssertProblem(await app.RevokeAsync(issued.SerialNumber, "certificateHold"), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("S/MIME BR 7.2.2", problem.GetProperty("detail").GetString());
        Assert.Equal("valid", (await app.GetCertificateAsync(issued.SerialNumber)).Status);
        Assert.Equal(crlBefore, await app.Client.GetByteArrayAsync("/crl/issuing.crl"));
        using var cert = X509Certificate2.CreateFromPem(issued.CertificatePem);
        Assert.Equal([Oids.PolicyMailboxValidatedStrict], CertificatePolicies.Read(cert.Extensions[Oids.CertificatePolicies]!));
    }

    [Fact]
    public async Task A_mailbox_longer_than_a_common_name_may_be_is_in_the_san_and_emailAddress_without_a_cn()
    {
        // X.520 bounds commonName at 64 characters (pkilint: x520_common_name ... length); a mailbox may have 254.
        // At most 64 characters before the @ (RFC 5321), so the length is in the domain too.
        var email = new string('l', 40) + "." + Guid.NewGuid().ToString("N")[..8] + "@mail.engineering-department.example.test";
        Assert.True(email.Length > 64);
        var token = await app.CreateTokenAsync(email, "signing");
        var issued = await app.EnrollAsync(token.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email));
        using var cert = X509Certificate2.CreateFromPem(issued.CertificatePem);
        var subject = cert.SubjectName.EnumerateRelativeDistinguishedNames().Select(r => (r.GetSingleElementType().Value, r.GetSingleElementValue())).ToList();
        Assert.Equal([(Oids.EmailAddress, email)], subject);
        Assert.Equal(email, cert.GetNameInfo(X509NameType.EmailName, forIssuer: false));
    }

    [Fact]
    public void The_linter_refuses_a_common_name_longer_than_x520_allows()
    {
        var email = new string('m', 70) + "@example.test";
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={email}, E={email}", key, HashAlgorithmName.SHA256);
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddDays(1));
        Assert.True(SubscriberKey.TryAccept(cert.PublicKey, out var accepted, out _));
        var order = new CertificateOrder(email, "", CertificateProfileName.Signing, accepted, [1, 2, 3, 4, 5, 6, 7, 8, 9], DateTimeOffset.UtcNow,
            DateTimeOffset.UtcNow.AddDays(1));
        Assert.Contains("subject CN longer than 64 characters (X.520 ub-common-name)", CertificateLinter.Lint(cert, order, new CertPortalOptions()));
    }

    [Fact]
    public void The_linter_refuses_a_personal_name_in_cn_under_the_mailbox_validated_policy()
    {
        // What pkilint reported as cabf.smime.common_name_value_unknown_source (S/MIME BR 7.1.4.2.2 (a)).
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=Alice Example, E=alice@example.test", key, HashAlgorithmName.SHA256);
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddDays(1));
        Assert.True(SubscriberKey.TryAccept(cert.PublicKey, out var accepted, out _));
        var order = new CertificateOrder("alice@example.test", "Alice Example", CertificateProfileName.Signing, accepted,
            [1, 2, 3, 4, 5, 6, 7, 8, 9], DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddDays(1));
        var problems = CertificateLinter.Lint(cert, order, new CertPortalOptions());
        Assert.Contains("subject CN of a mailbox-validated certificate must be the mailbox", problems);
    }
}

/// <summary>DisplayName mode: sponsor-validated certificates, the organisation named and vouching for the person.</summary>
public sealed class SponsorValidatedProfileTests(SponsorValidatedProfileTests.SponsorApp app) : IClassFixture<SponsorValidatedProfileTests.SponsorApp>
{
    public sealed class SponsorApp : CertPortalApp
    {
        protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
        {
            ["Issuance:SubjectCommonName"] = "DisplayName",
            ["Issuance:OrganizationName"] = "Example Corporation",
            ["Issuance:OrganizationIdentifier"] = "NTRGB-12345678",
        };
    }

    [Fact]
    public async Task A_display_name_certificate_is_sponsor_validated_with_the_organisation_and_the_name_split()
    {
        const string email = "mary.ann@example.test";
        var token = await app.CreateTokenAsync(email, "dual", "Mary Ann Example");
        var issued = await app.EnrollAsync(token.Token, SubscriberKeyPair.Generate("RSA-2048").CreateCsrPem(email));
        using var cert = X509Certificate2.CreateFromPem(issued.CertificatePem);
        var subject = cert.SubjectName.EnumerateRelativeDistinguishedNames(reversed: false)
            .Select(r => (r.GetSingleElementType().Value, r.GetSingleElementValue())).ToList();
        Assert.Equal(
        [
            (Oids.OrganizationName, "Example Corporation"), (Oids.OrganizationIdentifier, "NTRGB-12345678"),
            (Oids.GivenName, "Mary Ann"), (Oids.Surname, "Example"), (Oids.CommonName, "Mary Ann Example"), (Oids.EmailAddress, email),
        ], subject);
        Assert.Equal([Oids.PolicySponsorValidatedStrict], CertificatePolicies.Read(cert.Extensions[Oids.CertificatePolicies]!));
        // openssl reads the same subject.
        using var dir = new ToolDir("sponsor");
        var text = Tool.Run("openssl", ["x509", "-noout", "-subject", "-in", dir.Write("c.pem", issued.CertificatePem)]).EnsureSuccess().Stdout;
        Assert.Contains("O = Example Corporation", text);
        Assert.Contains("GN = Mary Ann", text);
    }

    [Fact]
    public async Task A_token_without_a_display_name_is_refused_in_display_name_mode()
    {
        var r = await app.Admin.PostAsJsonAsync("/api/v1/tokens", new { email = "nameless@example.test", profile = "signing" });
        var problem = await Http.AssertProblem(r, HttpStatusCode.UnprocessableEntity);
        Assert.Contains("displayName", problem.GetProperty("detail").GetString());
    }
}
