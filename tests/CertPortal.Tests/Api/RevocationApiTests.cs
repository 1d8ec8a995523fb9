using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Api;

public class RevocationApiTests(ClockedApp app) : IClassFixture<ClockedApp>
{
    [Fact]
    public async Task Revocation_reaches_the_record_the_crl_and_the_audit_log_and_repeating_it_changes_nothing()
    {
        var (issued, _) = await app.IssueAsync("revoke.me@example.test", "signing");
        var before = await CrlAsync();

        var r = await app.RevokeAsync(issued.SerialNumber, "keyCompromise");
        await Http.EnsureStatus(r, HttpStatusCode.OK);
        var record = await app.GetCertificateAsync(issued.SerialNumber);
        Assert.Equal("revoked", record.Status);
        Assert.Equal("keyCompromise", record.RevocationReason);

        var crl = await CrlAsync();
        Assert.True(crl.Number > before.Number);
        Assert.Equal(X509RevocationReason.KeyCompromise, crl.Entries[issued.SerialNumber]);

        // Twice: harmless, no new CRL, the original reason and time stay.
        await Http.EnsureStatus(await app.RevokeAsync(issued.SerialNumber, "superseded"), HttpStatusCode.OK);
        var again = await app.GetCertificateAsync(issued.SerialNumber);
        Assert.Equal("keyCompromise", again.RevocationReason);
        Assert.Equal(record.RevokedAt, again.RevokedAt);
        Assert.Equal(crl.Number, (await CrlAsync()).Number);

        var audit = await app.Admin.GetStringAsync($"/api/v1/audit?target=certificate:{issued.SerialNumber}");
        Assert.Contains("certificate.issued", audit);
        Assert.Contains("certificate.revoked", audit);
        Assert.Contains("keyCompromise", audit);
    }

    [Fact]
    public async Task Hold_then_release_takes_the_certificate_off_the_crl()
    {
        var (issued, _) = await app.IssueAsync("hold.me@example.test", "encryption");
        await Http.EnsureStatus(await app.RevokeAsync(issued.SerialNumber, "certificateHold"), HttpStatusCode.OK);
        Assert.Equal("onHold", (await app.GetCertificateAsync(issued.SerialNumber)).Status);
        var held = await CrlAsync();
        Assert.Equal(X509RevocationReason.CertificateHold, held.Entries[issued.SerialNumber]);

        var released = await app.Admin.PostAsync($"/api/v1/certificates/{issued.SerialNumber}/release", null);
        await Http.EnsureStatus(released, HttpStatusCode.OK);
        Assert.Equal("valid", (await app.GetCertificateAsync(issued.SerialNumber)).Status);
        var after = await CrlAsync();
        Assert.True(after.Number > held.Number);
        Assert.False(after.Entries.ContainsKey(issued.SerialNumber));

        // A hold can become a permanent revocation; that cannot be released.
        await app.RevokeAsync(issued.SerialNumber, "certificateHold");
        await Http.EnsureStatus(await app.RevokeAsync(issued.SerialNumber, "cessationOfOperation"), HttpStatusCode.OK);
        Assert.Equal("revoked", (await app.GetCertificateAsync(issued.SerialNumber)).Status);
        await Http.AssertProblem(await app.Admin.PostAsync($"/api/v1/certificates/{issued.SerialNumber}/release", null), HttpStatusCode.Conflict);
    }

    [Fact]
    public async Task Reason_unspecified_is_omitted_from_the_crl_as_the_smime_br_require()
    {
        var (issued, _) = await app.IssueAsync("unspecified@example.test", "signing");
        await Http.EnsureStatus(await app.RevokeAsync(issued.SerialNumber, "unspecified"), HttpStatusCode.OK);
        var crl = await CrlAsync();
        Assert.True(crl.Entries.ContainsKey(issued.SerialNumber));
        Assert.Null(crl.Entries[issued.SerialNumber]);
    }

    [Theory]
    [InlineData("nonsense", HttpStatusCode.UnprocessableEntity)]
    [InlineData("removeFromCRL", HttpStatusCode.UnprocessableEntity)]
    [InlineData("cACompromise", HttpStatusCode.UnprocessableEntity)]
    public async Task Bad_reasons_are_refused_and_change_nothing(string reason, HttpStatusCode status)
    {
        var (issued, _) = await app.IssueAsync($"bad.reason.{reason.ToLowerInvariant()}@example.test", "signing");
        var crlBefore = await CrlAsync();
        await Http.AssertProblem(await app.RevokeAsync(issued.SerialNumber, reason), status);
        Assert.Equal("valid", (await app.GetCertificateAsync(issued.SerialNumber)).Status);
        Assert.Equal(crlBefore.Number, (await CrlAsync()).Number);
    }

    [Fact]
    public async Task Revocation_needs_the_admin_key_and_a_known_serial()
    {
        var (issued, _) = await app.IssueAsync("auth.revoke@example.test", "signing");
        await Http.AssertProblem(await app.Client.PostAsJsonAsync($"/api/v1/certificates/{issued.SerialNumber}/revoke", new { reason = "keyCompromise" }),
            HttpStatusCode.Unauthorized);
        await Http.AssertProblem(await app.RevokeAsync("0123456789ABCDEF0123", "keyCompromise"), HttpStatusCode.NotFound);
        await Http.AssertProblem(await app.RevokeAsync("xyz", "keyCompromise"), HttpStatusCode.BadRequest);
        Assert.Equal("valid", (await app.GetCertificateAsync(issued.SerialNumber)).Status);
    }

    [Fact]
    public async Task Crl_is_reissued_before_next_update_without_revocations()
    {
        var first = await CrlAsync();
        app.Clock!.Advance(TimeSpan.FromDays(1) + TimeSpan.FromMinutes(10));
        await app.Service<CertPortal.Revocation.CrlPublisher>().PublishAsync(CancellationToken.None);
        var second = await CrlAsync();
        Assert.True(second.Number > first.Number);
        Assert.True(second.NextUpdate > first.NextUpdate);
        Assert.True(second.NextUpdate - second.ThisUpdate <= TimeSpan.FromDays(10));

        var status = await app.Client.GetFromJsonAsync<JsonElement[]>("/api/v1/crls", Http.Json);
        var issuing = status!.Single(s => s.GetProperty("authority").GetString() == "issuing");
        Assert.Equal(second.Number, issuing.GetProperty("number").GetInt64());
        // The root CRL is served too, at the URL the issuing CA certificate names.
        var root = await app.Client.GetAsync("/crl/root.crl");
        Assert.Equal("application/pkix-crl", root.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public Task A_release_racing_a_permanent_revocation_never_brings_the_certificate_back() =>
        RevocationRaces.A_release_racing_a_permanent_revocation_never_brings_the_certificate_back(app, "race.release");

    private async Task<ParsedCrl> CrlAsync()
    {
        var r = await app.Client.GetAsync("/crl/issuing.crl");
        await Http.EnsureStatus(r, HttpStatusCode.OK);
        Assert.Equal("application/pkix-crl", r.Content.Headers.ContentType?.MediaType);
        return ParsedCrl.Parse(await r.Content.ReadAsByteArrayAsync());
    }
}

/// <summary>Reads a DER CRL with BouncyCastle: .NET can build CRLs but not parse them.</summary>
public sealed record ParsedCrl(long Number, DateTimeOffset ThisUpdate, DateTimeOffset NextUpdate, Dictionary<string, X509RevocationReason?> Entries, byte[] Der)
{
    public static ParsedCrl Parse(byte[] der)
    {
        var crl = new Org.BouncyCastle.X509.X509CrlParser().ReadCrl(der);
        var number = Org.BouncyCastle.Asn1.DerInteger.GetInstance(
            Org.BouncyCastle.X509.Extension.X509ExtensionUtilities.FromExtensionValue(crl.GetExtensionValue(Org.BouncyCastle.Asn1.X509.X509Extensions.CrlNumber))).Value.LongValue;
        var entries = new Dictionary<string, X509RevocationReason?>();
        foreach (var e in crl.GetRevokedCertificates() ?? new HashSet<Org.BouncyCastle.X509.X509CrlEntry>())
        {
            var ext = e.GetExtensionValue(Org.BouncyCastle.Asn1.X509.X509Extensions.ReasonCode);
            X509RevocationReason? reason = ext is null ? null
                : (X509RevocationReason)Org.BouncyCastle.Asn1.DerEnumerated.GetInstance(Org.BouncyCastle.X509.Extension.X509ExtensionUtilities.FromExtensionValue(ext)).IntValueExact;
            entries[Convert.ToHexString(e.SerialNumber.ToByteArrayUnsigned())] = reason;
        }
        return new ParsedCrl(number, new DateTimeOffset(crl.ThisUpdate, TimeSpan.Zero), new DateTimeOffset(crl.NextUpdate!.Value, TimeSpan.Zero), entries, der);
    }
}
