using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using CertPortal.Authority;
using CertPortal.Tests.Api;
using CertPortal.Tests.Gal;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Standards;
using Microsoft.Extensions.Time.Testing;
using Org.BouncyCastle.Asn1;
using Org.BouncyCastle.Asn1.X509;

namespace CertPortal.Tests.Revocation;

/// <summary>Delta CRLs on (complete CRL at most hourly), holds allowed (multipurpose), and a clock the test moves.</summary>
public sealed class DeltaCrlApp : CertPortalApp
{
    public DeltaCrlApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow);

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Crl:DeltaBaseInterval"] = "01:00:00",
        ["Issuance:PolicyOids:0"] = Oids.PolicyMailboxValidatedMultipurpose,
    };
}

/// <summary>RFC 5280 §5.2.4 delta CRLs, checked with OpenSSL's own delta support (<c>-use_deltas</c>): a revocation
/// the complete CRL does not hold yet is seen through the delta, and a release from hold through removeFromCRL.</summary>
public sealed class DeltaCrlTests(DeltaCrlApp app) : IClassFixture<DeltaCrlApp>
{
    private const string DeltaPath = "/crl/issuing-delta.crl";

    [Fact]
    public async Task Openssl_with_use_deltas_sees_revocations_and_releases_that_only_the_delta_crl_holds()
    {
        Tool.Require("openssl", "openssl");
        var (a, _) = await app.IssueAsync("delta.a@example.test", "signing");
        var (b, _) = await app.IssueAsync("delta.b@example.test", "signing");
        var (c, _) = await app.IssueAsync("delta.c@example.test", "signing");
        Step();

        // New certificates and the complete CRL point at the delta CRL (freshestCRL); OpenSSL follows only such.
        using (var leaf = X509Certificate2.CreateFromPem(a.CertificatePem))
            Assert.Equal(app.BaseUrl + DeltaPath, FreshestCrlUrl(leaf.Extensions[Oids.FreshestCrl]!.RawData));
        var complete = await CompleteAsync();
        Assert.Equal(app.BaseUrl + DeltaPath, FreshestCrlUrl(CrlExtension(complete.Der, Oids.FreshestCrl)!));

        // A revocation goes into a delta CRL naming the complete CRL as its base; the complete CRL waits its hour.
        await Http.EnsureStatus(await app.RevokeAsync(a.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
        Step();
        var sameComplete = await CompleteAsync();
        Assert.Equal(complete.Number, sameComplete.Number);
        Assert.DoesNotContain(a.SerialNumber, sameComplete.Entries.Keys);
        var delta = await DeltaAsync();
        Assert.Equal(complete.Number, DeltaOf(delta.Der));
        Assert.True(delta.Number > complete.Number, "complete and delta CRLs share one increasing number sequence");
        Assert.Equal(X509RevocationReason.KeyCompromise, delta.Entries[a.SerialNumber]);
        Assert.Null(CrlExtension(delta.Der, Oids.FreshestCrl));
        using (var rp = new ToolDir("delta-openssl"))
        {
            var verified = Verify(rp, a, sameComplete.Der, delta: null);
            Assert.True(verified.ExitCode == 0, "the complete CRL alone does not know the revocation yet: " + verified.Output);
            var withDelta = Verify(rp, a, sameComplete.Der, delta.Der);
            Assert.NotEqual(0, withDelta.ExitCode);
            Assert.Contains("certificate revoked", withDelta.Output);
        }

        // A hold, then a new complete CRL (the base interval has passed and a revocation is pending): the delta starts
        // over against it, empty.
        await Http.EnsureStatus(await app.RevokeAsync(b.SerialNumber, "certificateHold"), HttpStatusCode.OK);
        app.Clock!.Advance(TimeSpan.FromHours(1) + TimeSpan.FromSeconds(5));
        await Http.EnsureStatus(await app.RevokeAsync(c.SerialNumber, "superseded"), HttpStatusCode.OK);
        Step();
        var newComplete = await CompleteAsync();
        Assert.True(newComplete.Number > delta.Number);
        Assert.Equal(X509RevocationReason.CertificateHold, newComplete.Entries[b.SerialNumber]);
        Assert.Equal(X509RevocationReason.Superseded, newComplete.Entries[c.SerialNumber]);
        var emptyDelta = await DeltaAsync();
        Assert.Equal(newComplete.Number, DeltaOf(emptyDelta.Der));
        Assert.Empty(emptyDelta.Entries);

        // Release from hold: removeFromCRL in the delta; OpenSSL with deltas accepts the certificate again.
        await Http.EnsureStatus(await app.Admin.PostAsync($"/api/v1/certificates/{b.SerialNumber}/release", null), HttpStatusCode.OK);
        Step();
        var released = await DeltaAsync();
        Assert.Equal(X509RevocationReason.RemoveFromCrl, released.Entries[b.SerialNumber]);
        Assert.Equal(newComplete.Number, (await CompleteAsync()).Number);
        using (var rp = new ToolDir("delta-openssl"))
        {
            var onHold = Verify(rp, b, newComplete.Der, delta: null);
            Assert.NotEqual(0, onHold.ExitCode);
            Assert.Contains("certificate revoked", onHold.Output);
            var withDelta = Verify(rp, b, newComplete.Der, released.Der);
            Assert.True(withDelta.ExitCode == 0, "removeFromCRL in the delta releases the hold: " + withDelta.Output);
        }

        var status = JsonDocument.Parse(await app.Client.GetStringAsync("/api/v1/crls")).RootElement.EnumerateArray()
            .Single(s => s.GetProperty("deltaOf").ValueKind == JsonValueKind.Number);
        Assert.Equal(released.Number, status.GetProperty("number").GetInt64());
        Assert.Equal(newComplete.Number, status.GetProperty("deltaOf").GetInt64());
        Assert.Equal(app.BaseUrl + DeltaPath, status.GetProperty("url").GetString());
    }

    [Fact]
    public async Task Delta_crls_are_served_with_validators_and_off_by_default()
    {
        var full = await app.Client.GetAsync(DeltaPath);
        Assert.Equal(HttpStatusCode.OK, full.StatusCode);
        Assert.Equal("application/pkix-crl", full.Content.Headers.ContentType?.MediaType);
        using var byTag = new HttpRequestMessage(HttpMethod.Get, DeltaPath);
        byTag.Headers.IfNoneMatch.Add(full.Headers.ETag!);
        Assert.Equal(HttpStatusCode.NotModified, (await app.Client.SendAsync(byTag)).StatusCode);

        // Without Crl:DeltaBaseInterval there is no delta URL, in certificates or CRLs.
        await using var plain = new CertPortalApp();
        await plain.InitializeAsync();
        await Http.AssertProblem(await plain.Client.GetAsync(DeltaPath), HttpStatusCode.NotFound);
        var (issued, _) = await plain.IssueAsync("no.delta@example.test", "signing");
        using var cert = X509Certificate2.CreateFromPem(issued.CertificatePem);
        Assert.Null(cert.Extensions[Oids.FreshestCrl]);
        Assert.Null(CrlExtension(await plain.Client.GetByteArrayAsync("/crl/issuing.crl"), Oids.FreshestCrl));
    }

    [SkippableFact]
    public async Task Delta_and_complete_crls_with_freshest_crl_are_pkilint_clean()
    {
        var pkilint = Pkilint.Locate();
        // A public CA's view, as in PkilintMatrixTests: public-looking URLs and mailboxes, strict policy (so the BR CRL
        // profile applies to the complete CRL too).
        await using var lint = new LintedDeltaApp();
        await lint.InitializeAsync();
        var (d, _) = await lint.IssueAsync("delta.lint@example.com", "signing");
        await Http.EnsureStatus(await lint.RevokeAsync(d.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
        using var dir = new ToolDir("pkilint-delta");
        var completeDer = await lint.Client.GetByteArrayAsync("/crl/issuing.crl");
        var deltaDer = await lint.Client.GetByteArrayAsync(DeltaPath);
        Assert.Contains(d.SerialNumber, ParsedCrl.Parse(deltaDer).Entries.Keys);
        var complete = dir.Write("complete.crl.pem", PemEncoding.WriteString("X509 CRL", completeDer) + "\n");
        var delta = dir.Write("delta.crl.pem", PemEncoding.WriteString("X509 CRL", deltaDer) + "\n");
        var findings = pkilint.Run(
        [
            new("complete CRL with freshestCRL (PKIX)", "crl", ["-t", "CRL", "-p", "PKIX"], complete),
            new("complete CRL with freshestCRL (BR)", "crl", ["-t", "CRL", "-p", "BR"], complete),
            new("delta CRL (PKIX)", "crl", ["-t", "CRL", "-p", "PKIX"], delta),
            new("delta CRL (BR)", "crl", ["-t", "CRL", "-p", "BR"], delta),
            new("certificate with freshestCRL", "smime", ["-d"], dir.Write("leaf.pem", d.CertificatePem)),
        ], dir);
        Assert.Empty(findings);
    }

    private sealed class LintedDeltaApp : CertPortalApp, IAsyncDisposable
    {
        protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
        {
            ["PublicBaseUrl"] = "http://pki.example.com",
            ["PortalUrl"] = BaseUrl,
            ["Crl:DeltaBaseInterval"] = "01:00:00",
        };

        async ValueTask IAsyncDisposable.DisposeAsync() => await DisposeAsync();
    }

    /// <summary>Real-clock waits for the next second give up on a frozen clock; moving it keeps each CRL in its own second.</summary>
    private void Step() => app.Clock!.Advance(TimeSpan.FromSeconds(2));

    private async Task<ParsedCrl> CompleteAsync() => ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing.crl"));

    private async Task<ParsedCrl> DeltaAsync() => ParsedCrl.Parse(await app.Client.GetByteArrayAsync(DeltaPath));

    /// <summary>`openssl verify -crl_check` at the service's (fake) time, with the delta only when given.</summary>
    private Tool.Result Verify(ToolDir dir, EnrollmentResponse leaf, byte[] complete, byte[]? delta)
    {
        var crls = PemEncoding.WriteString("X509 CRL", complete) + "\n" + (delta is null ? "" : PemEncoding.WriteString("X509 CRL", delta) + "\n");
        string[] args =
        [
            "verify", "-attime", app.Clock!.GetUtcNow().ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture),
            "-CAfile", dir.Write("chain.pem", leaf.ChainPem), "-CRLfile", dir.Write("crls.pem", crls), "-crl_check",
            .. delta is null ? Array.Empty<string>() : ["-use_deltas"],
            dir.Write("leaf.pem", leaf.CertificatePem),
        ];
        return Tool.Run("openssl", args);
    }

    private static string FreshestCrlUrl(byte[] extensionValue)
    {
        var point = CrlDistPoint.GetInstance(Asn1Object.FromByteArray(extensionValue)).GetDistributionPoints().Single();
        var name = GeneralNames.GetInstance(point.DistributionPointName.Name).GetNames().Single();
        Assert.Equal(GeneralName.UniformResourceIdentifier, name.TagNo);
        return name.Name.ToString()!;
    }

    private static byte[]? CrlExtension(byte[] crlDer, string oid)
    {
        var value = new Org.BouncyCastle.X509.X509CrlParser().ReadCrl(crlDer).GetExtensionValue(new DerObjectIdentifier(oid));
        return value is null ? null : Org.BouncyCastle.X509.Extension.X509ExtensionUtilities.FromExtensionValue(value).GetDerEncoded();
    }

    private static long DeltaOf(byte[] crlDer)
    {
        var crl = new Org.BouncyCastle.X509.X509CrlParser().ReadCrl(crlDer);
        Assert.Contains(X509Extensions.DeltaCrlIndicator.Id, crl.GetCriticalExtensionOids());
        return DerInteger.GetInstance(CrlExtension(crlDer, Oids.DeltaCrlIndicator)).Value.LongValue;
    }
}

/// <summary>The directory gets the delta CRL as deltaRevocationList;binary on the issuing CA's PKI entry. <see cref="Deltas"/>
/// set to false before a restart switches delta CRLs off.</summary>
public sealed class DeltaDirectoryApp : DirectoryApp
{
    public bool Deltas { get; set; } = true;

    protected override IDictionary<string, string?> Settings =>
        new Dictionary<string, string?>(base.Settings) { ["Crl:DeltaBaseInterval"] = Deltas ? "01:00:00" : "00:00:00" };
}

[Collection(nameof(DirectoryPublishingTests))]
public sealed class DeltaCrlDirectoryTests(DeltaDirectoryApp app) : IClassFixture<DeltaDirectoryApp>
{
    [Fact]
    public async Task The_pki_entry_holds_the_delta_crl_that_is_served_and_loses_it_when_delta_crls_are_switched_off()
    {
        var (issued, _) = await app.IssueAsync($"ldap.delta.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing");
        await Http.EnsureStatus(await app.RevokeAsync(issued.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
        await app.WaitForDirectoryAsync();
        var served = await app.Client.GetByteArrayAsync("/crl/issuing-delta.crl");
        Assert.Contains(issued.SerialNumber, ParsedCrl.Parse(served).Entries.Keys);
        var entry = app.Ldap.Search(Slapd.PkiDn, "(objectClass=*)", "*");
        Assert.Equal(served, Assert.Single(Slapd.BinaryValues(entry, "deltaRevocationList;binary")));
        Assert.Equal(await app.Client.GetByteArrayAsync("/crl/issuing.crl"), Assert.Single(Slapd.BinaryValues(entry, "certificateRevocationList;binary")));

        await app.StopAsync();
        app.Deltas = false;
        app.Start();
        var (later, _) = await app.IssueAsync($"ldap.delta.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing");
        await Http.EnsureStatus(await app.RevokeAsync(later.SerialNumber, "superseded"), HttpStatusCode.OK);
        await app.WaitForDirectoryAsync();
        await Http.AssertProblem(await app.Client.GetAsync("/crl/issuing-delta.crl"), HttpStatusCode.NotFound);
        entry = app.Ldap.Search(Slapd.PkiDn, "(objectClass=*)", "*");
        var complete = await app.Client.GetByteArrayAsync("/crl/issuing.crl");
        Assert.Contains(later.SerialNumber, ParsedCrl.Parse(complete).Entries.Keys);
        Assert.Equal(complete, Assert.Single(Slapd.BinaryValues(entry, "certificateRevocationList;binary")));
        // The delta left there would name a base no longer published and run out at its nextUpdate, never re-signed: a relying
        // party reading the entry (RFC 4523 §2.6) would take it for the current delta.
        Assert.Empty(Slapd.BinaryValues(entry, "deltaRevocationList;binary"));
    }
}

