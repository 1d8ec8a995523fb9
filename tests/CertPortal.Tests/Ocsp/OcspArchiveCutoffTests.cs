using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Time.Testing;
using CertPortal.Tests.Infrastructure;
using Org.BouncyCastle.Asn1;
using Org.BouncyCastle.Asn1.Ocsp;
using Org.BouncyCastle.Ocsp;

namespace CertPortal.Tests.Ocsp;

/// <summary>RFC 6960 4.4.4: once a certificate has expired, its OCSP answer keeps the last status and carries the
/// archive cutoff, the issuing CA's notBefore (every record since then is kept). A response kept in memory from before the
/// expiry is not served after it.</summary>
public sealed class OcspArchiveCutoffTests(OcspArchiveCutoffTests.ShortLivedApp app) : IClassFixture<OcspArchiveCutoffTests.ShortLivedApp>
{
    /// <summary>One-day certificates, and responses refreshed only after three days with a 30-day signer: at expiry the
    /// kept response is otherwise still current, so only the expiry can make it be signed again.</summary>
    public sealed class ShortLivedApp : CertPortalApp
    {
        public ShortLivedApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow);

        protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
        {
            ["Issuance:ValidityDays"] = "1",
            ["Ocsp:RefreshAfter"] = "3.00:00:00",
        };
    }

    [Fact]
    public async Task Expired_certificates_keep_their_status_with_the_archive_cutoff()
    {
        var clock = app.Clock!;
        var tag = Guid.NewGuid().ToString("N")[..8];
        var (good, _) = await app.IssueAsync($"cutoff.good.{tag}@example.test", "encryption");
        var (revoked, _) = await app.IssueAsync($"cutoff.revoked.{tag}@example.test", "signing");
        await Http.EnsureStatus(await app.RevokeAsync(revoked.SerialNumber, "keyCompromise"), System.Net.HttpStatusCode.OK);
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        var goodPath = OcspProbe.GetPath(OcspProbe.Request(issuing, good.SerialNumber));
        var revokedPath = OcspProbe.GetPath(OcspProbe.Request(issuing, revoked.SerialNumber));

        // Valid certificates: no cutoff (and the answers are now kept in memory).
        var (before, _) = OcspProbe.Read(await app.Client.GetByteArrayAsync(goodPath));
        Assert.Equal("good", OcspProbe.Describe(before));
        Assert.Null(ArchiveCutoff(before));
        Assert.Null(ArchiveCutoff(OcspProbe.Read(await app.Client.GetByteArrayAsync(revokedPath)).Answer));

        // A minute past notAfter, long before the kept response is due for its refresh, with the same signer.
        clock.Advance(good.NotAfter - clock.GetUtcNow() + TimeSpan.FromMinutes(1));
        var (after, _) = OcspProbe.Read(await app.Client.GetByteArrayAsync(goodPath));
        Assert.Equal("good", OcspProbe.Describe(after));
        Assert.Equal(issuing.NotBefore.ToUniversalTime(), ArchiveCutoff(after));
        Assert.True(after.ThisUpdate > before.ThisUpdate, "signed again after the expiry");

        var (stillRevoked, _) = OcspProbe.Read(await app.Client.GetByteArrayAsync(revokedPath));
        Assert.Equal("revoked:" + Org.BouncyCastle.Asn1.X509.CrlReason.KeyCompromise, OcspProbe.Describe(stillRevoked));
        Assert.Equal(issuing.NotBefore.ToUniversalTime(), ArchiveCutoff(stillRevoked));

        // Both in one POST with a nonce (signed per request): the same.
        var both = new OcspReqGenerator();
        foreach (var serial in new[] { good.SerialNumber, revoked.SerialNumber })
            both.AddRequest(new OcspReq(OcspProbe.Request(issuing, serial)).GetRequestList()[0].GetCertID());
        var extensions = new Org.BouncyCastle.Asn1.X509.X509ExtensionsGenerator();
        extensions.AddExtension(OcspObjectIdentifiers.PkixOcspNonce, false, new DerOctetString(new byte[16]));
        both.SetRequestExtensions(extensions.Generate());
        var basic = (BasicOcspResp)new OcspResp(await OcspProbe.PostAsync(app.Client, both.Generate().GetEncoded())).GetResponseObject();
        Assert.True(basic.Verify(basic.GetCerts()[0].GetPublicKey()));
        Assert.All(basic.Responses, r => Assert.Equal(issuing.NotBefore.ToUniversalTime(), ArchiveCutoff(r)));
    }

    [SkippableFact]
    public async Task The_answer_for_an_expired_certificate_is_pkilint_clean()
    {
        var pkilint = CertPortal.Tests.Standards.Pkilint.Locate();
        var (issued, _) = await app.IssueAsync($"cutoff.lint.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing");
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        app.Clock!.Advance(issued.NotAfter - app.Clock.GetUtcNow() + TimeSpan.FromMinutes(1));
        var response = await OcspProbe.PostAsync(app.Client, OcspProbe.Request(issuing, issued.SerialNumber));
        Assert.NotNull(ArchiveCutoff(OcspProbe.Read(response).Answer));
        using var dir = new ToolDir("pkilint-archive-cutoff");
        var findings = pkilint.Run([new("OCSP response for an expired certificate", "ocsp", [], dir.Write("expired.der", response))], dir);
        Assert.True(findings.Count == 0, string.Join("\n", findings));
    }

    private static DateTime? ArchiveCutoff(SingleResp answer)
    {
        var extension = answer.SingleExtensions?.GetExtension(OcspObjectIdentifiers.PkixOcspArchiveCutoff);
        if (extension is null) return null;
        Assert.False(extension.IsCritical);
        return Asn1GeneralizedTime.GetInstance(extension.GetParsedValue()).ToDateTime().ToUniversalTime();
    }
}
