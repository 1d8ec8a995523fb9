using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using CertPortal.Tests.Api;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Ocsp;

namespace CertPortal.Tests.Renewal;

/// <summary>As <see cref="OpenRenewalApp"/> (the renewal window always open), issuing under a multipurpose policy, which allows holds.</summary>
public sealed class HoldingRenewalApp : CertPortalApp
{
    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Renewal:OpensBeforeExpiry"] = "400.00:00:00",
        ["Issuance:PolicyOids:0"] = CertPortal.Authority.Oids.PolicyMailboxValidatedMultipurpose,
    };
}

/// <summary>A renewal is proven by the renewed certificate's key alone. Once that key is known compromised the proof is worth
/// nothing (whoever stole the key may have renewed to a key of their own), so a keyCompromise revocation takes the certificates
/// renewed on its strength with it, down the chain; another reason takes none, and nothing before the compromised one is touched.</summary>
public sealed class CompromisedRenewalTests(HoldingRenewalApp app) : IClassFixture<HoldingRenewalApp>
{
    private readonly string _run = Guid.NewGuid().ToString("N")[..6];

    [Fact]
    public async Task Revoking_for_key_compromise_revokes_the_renewals_proven_by_that_key_down_the_chain()
    {
        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("renewal-compromised");
        var alice = $"alice.{_run}@example.com";
        var (a, aKey) = await app.IssueAsync(alice, "signing");
        var (b, bKey) = await RenewAsync(dir, alice, a, aKey);
        var (c, cKey) = await RenewAsync(dir, alice, b, bKey);
        // The newest on hold (a laptop mislaid): keyCompromise overrides a hold (RFC 5280 5.3.1).
        await Http.EnsureStatus(await app.RevokeAsync(c.SerialNumber, "certificateHold"), HttpStatusCode.OK);

        var response = await app.RevokeAsync(a.SerialNumber, "keyCompromise");
        await Http.EnsureStatus(response, HttpStatusCode.OK);

        foreach (var successor in new[] { b, c })
        {
            var record = await app.GetCertificateAsync(successor.SerialNumber);
            Assert.Equal((successor.SerialNumber, "revoked", "keyCompromise"), (record.SerialNumber, record.Status, record.RevocationReason));
            // Audited as its own revocation, naming the compromised certificate (for C too, renewed from B) as the cause.
            var audit = await app.Admin.GetStringAsync($"/api/v1/audit?target=certificate:{successor.SerialNumber}");
            Assert.Contains("certificate.revoked", audit);
            Assert.Contains($"certificate:{a.SerialNumber}", audit);
        }
        Assert.Equal(new[] { b.SerialNumber, c.SerialNumber }.Order(StringComparer.Ordinal), await AlsoRevokedAsync(response));

        // What relying parties see: the CRL (signed before the revocation answered) and OCSP.
        var crl = ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing.crl"));
        foreach (var serial in new[] { a.SerialNumber, b.SerialNumber, c.SerialNumber })
            Assert.Equal(X509RevocationReason.KeyCompromise, crl.Entries[serial]);
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        var ocsp = OcspProbe.Read(await OcspProbe.PostAsync(app.Client, OcspProbe.Request(issuing, c.SerialNumber))).Answer;
        Assert.Equal("revoked:1", OcspProbe.Describe(ocsp)); // CRLReason keyCompromise (1)

        // Only the compromised key is blocked: the successors' keys may be the attacker's or Alice's own, and Alice may certify
        // hers again.
        var blocked = JsonDocument.Parse(await app.Admin.GetStringAsync("/api/v1/blocked-keys")).RootElement.EnumerateArray()
            .Select(k => k.GetProperty("spkiSha256").GetString()).ToHashSet();
        Assert.Contains(SpkiSha256(a), blocked);
        Assert.DoesNotContain(SpkiSha256(b), blocked);
        Assert.DoesNotContain(SpkiSha256(c), blocked);
        await app.EnrollAsync((await app.CreateTokenAsync(alice, "signing")).Token, cKey.CreateCsrPem(alice));
    }

    [Fact]
    public async Task Another_reason_revokes_no_renewal_and_a_compromise_never_reaches_back_or_changes_a_revoked_renewal()
    {
        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("renewal-compromised-guards");
        var bob = $"bob.{_run}@example.com";
        var (a, aKey) = await app.IssueAsync(bob, "signing");
        var (b, bKey) = await RenewAsync(dir, bob, a, aKey);
        var (c, _) = await RenewAsync(dir, bob, b, bKey);

        // Another reason says nothing against the key: the renewal it proved stays valid.
        var affiliation = await app.RevokeAsync(a.SerialNumber, "affiliationChanged");
        await Http.EnsureStatus(affiliation, HttpStatusCode.OK);
        Assert.Equal("valid", (await app.GetCertificateAsync(b.SerialNumber)).Status);
        Assert.Empty(await AlsoRevokedAsync(affiliation));

        // B revoked as superseded, then A's compromise learnt: A's reason becomes keyCompromise, so does B's (its revocation time
        // kept: what it signed before is as suspect as A's), and C, renewed by B's key on the strength of A's, is revoked.
        await Http.EnsureStatus(await app.RevokeAsync(b.SerialNumber, "superseded"), HttpStatusCode.OK);
        var supersededAt = (await app.GetCertificateAsync(b.SerialNumber)).RevokedAt;
        var compromise = await app.RevokeAsync(a.SerialNumber, "keyCompromise");
        await Http.EnsureStatus(compromise, HttpStatusCode.OK);
        var bAfter = await app.GetCertificateAsync(b.SerialNumber);
        Assert.Equal(("keyCompromise", supersededAt), (bAfter.RevocationReason, bAfter.RevokedAt));
        Assert.Equal("keyCompromise", (await app.GetCertificateAsync(c.SerialNumber)).RevocationReason);
        Assert.Equal([b.SerialNumber, c.SerialNumber], await AlsoRevokedAsync(compromise));

        // A renewal's key compromised: the certificate it renewed keeps its state; its own renewal is revoked.
        var carol = $"carol.{_run}@example.com";
        var (d, dKey) = await app.IssueAsync(carol, "signing");
        var (e, eKey) = await RenewAsync(dir, carol, d, dKey);
        var (f, _) = await RenewAsync(dir, carol, e, eKey);
        await Http.EnsureStatus(await app.RevokeAsync(e.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
        Assert.Equal("valid", (await app.GetCertificateAsync(d.SerialNumber)).Status);
        Assert.Equal("keyCompromise", (await app.GetCertificateAsync(f.SerialNumber)).RevocationReason);
    }

    private Task<(EnrollmentResponse Cert, SubscriberKeyPair Key)> RenewAsync(ToolDir dir, string mailbox, EnrollmentResponse current,
        SubscriberKeyPair key) => RenewalRequests.RenewToNewKeyAsync(app.Client, dir, mailbox, current, key);

    /// <summary>The serials the revocation's answer says it revoked with the certificate, in serial order.</summary>
    private static async Task<string[]> AlsoRevokedAsync(HttpResponseMessage response)
    {
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.True(body.TryGetProperty("alsoRevoked", out var also), $"no alsoRevoked in {body}");
        return [.. also.EnumerateArray().Select(s => s.GetString()!).Order(StringComparer.Ordinal)];
    }

    private static string SpkiSha256(EnrollmentResponse issued)
    {
        using var certificate = X509Certificate2.CreateFromPem(issued.CertificatePem);
        return Convert.ToHexString(SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo()));
    }
}
