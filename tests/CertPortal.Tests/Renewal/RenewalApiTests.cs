using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Tests.Gal;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace CertPortal.Tests.Renewal;

/// <summary>A CA whose certificates live 30 days and may be renewed in their last 20, publishing to slapd. Its clock
/// starts 11 days in the past, so certificates issued at first are too young to renew until the test moves the clock
/// to the real present, where OpenSSL's signingTime is fresh.</summary>
public sealed class RenewalApp : DirectoryApp
{
    public RenewalApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow.AddDays(-11));

    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["Issuance:ValidityDays"] = "30";
            settings["Renewal:OpensBeforeExpiry"] = "20.00:00:00";
            return settings;
        }
    }
}

/// <summary>Renewal as an API client does it (EST re-enroll style): the new CSR inside a CMS SignedData made by
/// `openssl cms -sign` with the current certificate and key. What a person with a valid certificate gets, and every
/// way a request that is not theirs, or comes too early or too late, is refused.</summary>
public sealed class RenewalApiTests(RenewalApp app) : IClassFixture<RenewalApp>
{
    private readonly string _run = Guid.NewGuid().ToString("N")[..6];

    [Fact]
    public async Task Renewal_signed_with_the_current_key_by_openssl_gives_a_new_certificate_once_and_the_directory_gets_it()
    {
        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("renewal");
        var alice = $"alice.{_run}@example.com";
        var (current, currentKey) = await app.IssueAsync(alice, "signing");
        var (unrenewed, unrenewedKey) = await app.IssueAsync($"alice.unrenewed.{_run}@example.com", "signing");

        // Thirty days left at issue: the renewal window (the last twenty) is not open yet.
        var next = SubscriberKeyPair.Generate("EC-P256");
        var tooEarly = await RenewAsync(dir, next.CreateCsrPem(alice), current.CertificatePem, currentKey);
        var problem = await Http.AssertProblem(tooEarly, HttpStatusCode.UnprocessableEntity);
        Assert.Equal("Too early to renew.", problem.GetProperty("title").GetString());

        // The issues' publications first: a clock moved past the outbox's claim while it writes makes it stop and retry later
        // by that clock (see EscrowedRenewalTests).
        await app.WaitForDirectoryAsync();
        app.Clock!.SetUtcNow(DateTimeOffset.UtcNow);
        var response = await RenewAsync(dir, next.CreateCsrPem(alice), current.CertificatePem, currentKey);
        await Http.EnsureStatus(response, HttpStatusCode.Created);
        var renewed = (await response.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!;
        Assert.NotEqual(current.SerialNumber, renewed.SerialNumber);
        using (var issued = X509Certificate2.CreateFromPem(renewed.CertificatePem))
        using (var nextKey = next.Load())
        {
            // Same mailbox and profile, the new key, a full new lifetime.
            Assert.Equal(alice, issued.GetNameInfo(X509NameType.EmailName, false));
            Assert.Equal(((ECDsa)nextKey).ExportSubjectPublicKeyInfo(), issued.PublicKey.ExportSubjectPublicKeyInfo());
            Assert.True(renewed.NotAfter > current.NotAfter.AddDays(10));
        }
        var newCert = await app.GetCertificateAsync(renewed.SerialNumber);
        Assert.Equal("signing", newCert.Profile);
        Assert.Equal("valid", newCert.Status);
        // The old certificate stays valid until it expires.
        Assert.Equal("valid", (await app.GetCertificateAsync(current.SerialNumber)).Status);

        // A client that lost the answer sends the same renewal again and collects the same certificate.
        var again = await RenewAsync(dir, next.CreateCsrPem(alice), current.CertificatePem, currentKey);
        await Http.EnsureStatus(again, HttpStatusCode.OK);
        Assert.Equal(renewed.SerialNumber, (await again.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!.SerialNumber);

        // Spent: a certificate is renewed once; a second renewal with another key is refused.
        var spent = await RenewAsync(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(alice), current.CertificatePem, currentKey);
        Assert.Contains(renewed.SerialNumber, (await Http.AssertProblem(spent, HttpStatusCode.Conflict)).GetProperty("detail").GetString());

        // The directory holds the new certificate only (PublishOnlyNewest).
        await app.WaitForDirectoryAsync();
        var published = Assert.Single(app.PublishedCertificates(alice));
        using var newest = X509Certificate2.CreateFromPem(renewed.CertificatePem);
        Assert.Equal(newest.RawData, published);

        var audit = await app.Admin.GetStringAsync($"/api/v1/audit?target=certificate:{current.SerialNumber}");
        Assert.Contains("certificate.renewed", audit);

        // Expired: signed while it was valid, sent after it expired. Its key proves nothing any more.
        var unrenewedMailbox = $"alice.unrenewed.{_run}@example.com";
        var late = RenewalRequests.Sign(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(unrenewedMailbox), unrenewed.CertificatePem, unrenewedKey);
        app.Clock.SetUtcNow(unrenewed.NotAfter.AddMinutes(1));
        var expired = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = late });
        Assert.Equal("Certificate expired.", (await Http.AssertProblem(expired, HttpStatusCode.Forbidden)).GetProperty("title").GetString());

        // The renewed certificate expired too: a repeat of its renewal still collects what it was given (a lost answer for a
        // renewal made in its last minutes), and nothing else is given.
        app.Clock.SetUtcNow(current.NotAfter.AddMinutes(1));
        await RenewalRequests.RepeatCollectsOnlyTheSameKeyAsync(app, alice, next, current.CertificatePem, currentKey, renewed.SerialNumber);
    }

    private Task<HttpResponseMessage> RenewAsync(ToolDir dir, string csrPem, string certificatePem, SubscriberKeyPair key) =>
        app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = RenewalRequests.Sign(dir, csrPem, certificatePem, key) });
}

/// <summary>Real time, and a window that is always open (it is longer than the certificates live).</summary>
public sealed class OpenRenewalApp : CertPortalApp
{
    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Renewal:OpensBeforeExpiry"] = "400.00:00:00",
    };
}

public sealed class RenewalRefusalTests(OpenRenewalApp app) : IClassFixture<OpenRenewalApp>
{
    [Fact]
    public async Task Without_supersede_after_the_renewal_page_says_the_old_certificate_stays_valid_until_it_expires()
    {
        var page = await app.Client.GetStringAsync("/renew");
        Assert.Contains("The old certificate stays valid until it expires", page);
        Assert.DoesNotContain("superseded", page);
    }

    private readonly string _run = Guid.NewGuid().ToString("N")[..6];

    [Fact]
    public async Task Renewals_not_proven_by_a_valid_certificates_own_key_are_refused()
    {
        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("renewal-refused");
        var bob = $"bob.{_run}@example.com";
        var carol = $"carol.{_run}@example.com";
        var (bobCert, bobKey) = await app.IssueAsync(bob, "signing");
        var (carolCert, carolKey) = await app.IssueAsync(carol, "signing");

        // Another person's key: Bob signs a request for Carol's mailbox with his own valid certificate.
        var forCarol = await RenewAsync(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(carol), bobCert.CertificatePem, bobKey);
        var wrongPerson = await Http.AssertProblem(forCarol, HttpStatusCode.UnprocessableEntity);
        Assert.Equal("CSR names another mailbox.", wrongPerson.GetProperty("title").GetString());

        // A forged certificate with Carol's issuer and serial but Bob's key: the signature verifies with the forgery,
        // not with Carol's real certificate, so it proves nothing.
        var forged = RenewalRequests.Forge(carolCert.CertificatePem, bobKey);
        var forgery = await RenewAsync(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(carol), forged, bobKey);
        var wrongKey = await Http.AssertProblem(forgery, HttpStatusCode.Forbidden);
        Assert.Equal("Not signed by the certificate's key.", wrongKey.GetProperty("title").GetString());

        // A certificate from another CA entirely.
        var (stranger, strangerKey) = RenewalRequests.SelfSigned(carol);
        var foreign = await RenewAsync(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(carol), stranger, strangerKey);
        await Http.AssertProblem(foreign, HttpStatusCode.Forbidden);

        // Renewing with the same key is off by default.
        var sameKey = await RenewAsync(dir, carolKey.CreateCsrPem(carol), carolCert.CertificatePem, carolKey);
        Assert.Equal("New key required.", (await Http.AssertProblem(sameKey, HttpStatusCode.UnprocessableEntity)).GetProperty("title").GetString());

        // Revoked: its key proves nothing any more.
        await Http.EnsureStatus(await app.RevokeAsync(bobCert.SerialNumber, "affiliationChanged"), HttpStatusCode.OK);
        var revoked = await RenewAsync(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(bob), bobCert.CertificatePem, bobKey);
        Assert.Equal("Certificate revoked.", (await Http.AssertProblem(revoked, HttpStatusCode.Forbidden)).GetProperty("title").GetString());

        // Not a CMS message at all, or an empty one: 422, never 500.
        await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = "bm90IGNtcw==" }), HttpStatusCode.UnprocessableEntity);
        await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = (string?)null }), HttpStatusCode.UnprocessableEntity);

        // Signed by Carol's own key, named by its key identifier, with a malformed certificate among those the message carries
        // (decoded only when the signer is looked up by its identifier): refused, never 500.
        var junk = RenewalRequests.WithJunkCertificate(RenewalRequests.SignByKeyIdentifier(SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(carol),
            carolCert.CertificatePem, carolKey));
        var malformed = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = Convert.ToBase64String(junk) });
        Assert.InRange((int)malformed.StatusCode, 400, 499);
        await Http.AssertProblem(malformed, malformed.StatusCode);
    }

    private Task<HttpResponseMessage> RenewAsync(ToolDir dir, string csrPem, string certificatePem, SubscriberKeyPair key) =>
        app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = RenewalRequests.Sign(dir, csrPem, certificatePem, key) });
}

/// <summary>A client that means to renew one certificate names it (<c>expectedSerialNumber</c>, as the renewal page does when a
/// reminder's link names the ID), and a request signed with another certificate's key is refused rather than renewing that
/// one: a person with separate signing and encryption IDs who signed with the wrong file would otherwise renew the other ID
/// and leave the named one to expire. Before, the field was not read and the signing ID was renewed (201).</summary>
public sealed class ExpectedSerialRenewalTests(OpenRenewalApp app) : IClassFixture<OpenRenewalApp>
{
    [Fact]
    public async Task A_renewal_that_names_one_certificate_and_is_signed_by_another_renews_nothing()
    {
        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("renewal-expected-serial");
        var gail = $"gail.{Guid.NewGuid().ToString("N")[..6]}@example.com";
        var (signing, signingKey) = await app.IssueAsync(gail, "signing");
        var (encryption, encryptionKey) = await app.IssueAsync(gail, "encryption");

        // The encryption ID named, the signing ID's key used.
        var wrongFile = await app.Client.PostAsJsonAsync("/api/v1/renewals", new
        {
            cms = RenewalRequests.Sign(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(gail), signing.CertificatePem, signingKey),
            expectedSerialNumber = encryption.SerialNumber,
        });
        var problem = await Http.AssertProblem(wrongFile, HttpStatusCode.UnprocessableEntity);
        Assert.Equal("Signed by another certificate.", problem.GetProperty("title").GetString());
        Assert.Contains(encryption.SerialNumber, problem.GetProperty("detail").GetString());
        Assert.Contains(signing.SerialNumber, problem.GetProperty("detail").GetString());
        Assert.Empty(await RenewedFromAsync(signing.SerialNumber));

        // Not a serial at all: said so, nothing renewed.
        var unreadable = await app.Client.PostAsJsonAsync("/api/v1/renewals", new
        {
            cms = RenewalRequests.Sign(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(gail), signing.CertificatePem, signingKey),
            expectedSerialNumber = "not a serial",
        });
        Assert.Equal("Invalid expectedSerialNumber.", (await Http.AssertProblem(unreadable, HttpStatusCode.UnprocessableEntity)).GetProperty("title").GetString());
        Assert.Empty(await RenewedFromAsync(signing.SerialNumber));

        // Named in any form the other APIs take (lower case, colons, a leading zero octet) and signed by its own key: renewed.
        var written = "00:" + string.Join(':', Enumerable.Range(0, encryption.SerialNumber.Length / 2).Select(i => encryption.SerialNumber.Substring(2 * i, 2))).ToLowerInvariant();
        var renewed = await app.Client.PostAsJsonAsync("/api/v1/renewals", new
        {
            cms = RenewalRequests.Sign(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(gail), encryption.CertificatePem, encryptionKey),
            expectedSerialNumber = written,
        });
        await Http.EnsureStatus(renewed, HttpStatusCode.Created);
        var successor = (await renewed.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!.SerialNumber;
        Assert.Equal([successor], await RenewedFromAsync(encryption.SerialNumber));
        Assert.Empty(await RenewedFromAsync(signing.SerialNumber));
    }

    private async Task<List<string>> RenewedFromAsync(string serial)
    {
        using var scope = app.Services.CreateScope();
        return await scope.ServiceProvider.GetRequiredService<CertPortal.Data.CertPortalDbContext>().Certificates.AsNoTracking()
            .Where(c => c.RenewalOf == serial).Select(c => c.SerialNumber).ToListAsync();
    }
}

/// <summary>An encryption ID with an EC key: its certificate allows keyAgreement only (RFC 5480 §3), which .NET reads as an ECDH key
/// with nothing to verify a signature with. The holder still proves the key by signing with it, as every other holder does.</summary>
public sealed class KeyAgreementRenewalTests(OpenRenewalApp app) : IClassFixture<OpenRenewalApp>
{
    [Fact]
    public async Task An_ec_encryption_certificate_renews_with_its_own_key_and_with_no_other()
    {
        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("renewal-key-agreement");
        var run = Guid.NewGuid().ToString("N")[..6];
        var erin = $"erin.{run}@example.com";
        var (current, key) = await app.IssueAsync(erin, "encryption");
        using (var issued = X509Certificate2.CreateFromPem(current.CertificatePem))
            Assert.Equal(X509KeyUsageFlags.KeyAgreement, issued.Extensions.OfType<X509KeyUsageExtension>().Single().KeyUsages);

        // Another person's key cannot stand in for Erin's: a certificate naming her issuer and serial made for it, or her own
        // certificate carried beside a signature by that key.
        var (mallory, malloryKey) = await app.IssueAsync($"mallory.{run}@example.com", "encryption");
        var forged = await RenewAsync(dir, erin, RenewalRequests.Forge(current.CertificatePem, malloryKey), malloryKey);
        Assert.Equal("Not signed by the certificate's key.", (await Http.AssertProblem(forged, HttpStatusCode.Forbidden)).GetProperty("title").GetString());
        using (var malloryEcdsa = (ECDsa)malloryKey.Load())
        {
            var signedByMallory = CraftedSignerInfos.Build(CraftedSignerInfos.Der(SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(erin)), current.CertificatePem,
                new CraftedSignerInfos.Spec(CraftedSignerInfos.Sha256, null, CraftedSignerInfos.EcdsaSha256, null,
                    d => malloryEcdsa.SignData(d, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence), HashAlgorithmName.SHA256));
            var carried = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = Convert.ToBase64String(signedByMallory) });
            Assert.Equal("Not signed by the certificate's key.", (await Http.AssertProblem(carried, HttpStatusCode.Forbidden)).GetProperty("title").GetString());
        }
        Assert.Equal("valid", (await app.GetCertificateAsync(mallory.SerialNumber)).Status);

        // Erin's own key, as openssl cms -sign uses it (signer named by issuer and serial): renewed. The same request again, the
        // signer named by its key identifier (-keyid), collects the same certificate.
        var next = SubscriberKeyPair.Generate("EC-P256");
        var renewed = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = RenewalRequests.Sign(dir, next.CreateCsrPem(erin), current.CertificatePem, key) });
        await Http.EnsureStatus(renewed, HttpStatusCode.Created);
        var serial = (await renewed.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!.SerialNumber;
        Assert.Equal("encryption", (await app.GetCertificateAsync(serial)).Profile);
        var csr = dir.Write("next.csr", next.CreateCsrPem(erin));
        Tool.Run("openssl", ["req", "-in", csr, "-outform", "DER", "-out", csr + ".der"]).EnsureSuccess();
        dir.Write("erin.crt", current.CertificatePem);
        dir.Write("erin.key", key.PrivateKeyPem);
        Tool.Run("openssl", ["cms", "-sign", "-nodetach", "-binary", "-keyid", "-in", csr + ".der", "-signer", dir.File("erin.crt"),
            "-inkey", dir.File("erin.key"), "-outform", "DER", "-out", dir.File("again.p7")]).EnsureSuccess();
        var again = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = Convert.ToBase64String(File.ReadAllBytes(dir.File("again.p7"))) });
        await Http.EnsureStatus(again, HttpStatusCode.OK);
        Assert.Equal(serial, (await again.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!.SerialNumber);
    }

    private Task<HttpResponseMessage> RenewAsync(ToolDir dir, string mailbox, string certificatePem, SubscriberKeyPair key) =>
        app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = RenewalRequests.Sign(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(mailbox), certificatePem, key) });
}

/// <summary>Renewal requests as clients make them, and the forgeries an attacker would try.</summary>
public static class RenewalRequests
{
    /// <summary>What an API client does: the CSR in DER, signed with the current certificate and key (signingTime included).</summary>
    public static string Sign(ToolDir dir, string csrPem, string certificatePem, SubscriberKeyPair key)
    {
        var id = Guid.NewGuid().ToString("N")[..8];
        dir.Write($"{id}.csr", csrPem);
        Tool.Run("openssl", ["req", "-in", dir.File($"{id}.csr"), "-outform", "DER", "-out", dir.File($"{id}.der")]).EnsureSuccess();
        return SignContent(dir, dir.File($"{id}.der"), certificatePem, key.PrivateKeyPem);
    }

    /// <summary>Renews <paramref name="current"/> to a new EC-P256 key as an API client does (201 expected): the new certificate
    /// and its key, for a chain of renewals.</summary>
    public static async Task<(EnrollmentResponse Cert, SubscriberKeyPair Key)> RenewToNewKeyAsync(HttpClient client, ToolDir dir, string mailbox,
        EnrollmentResponse current, SubscriberKeyPair key)
    {
        var next = SubscriberKeyPair.Generate("EC-P256");
        var response = await client.PostAsJsonAsync("/api/v1/renewals", new { cms = Sign(dir, next.CreateCsrPem(mailbox), current.CertificatePem, key) });
        await Http.EnsureStatus(response, HttpStatusCode.Created);
        return ((await response.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!, next);
    }

    /// <summary><c>openssl cms -sign -nodetach -binary</c> over a file, with the current certificate and its key.</summary>
    public static string SignContent(ToolDir dir, string contentFile, string certificatePem, string privateKeyPem)
    {
        var id = Guid.NewGuid().ToString("N")[..8];
        dir.Write($"{id}.crt", certificatePem);
        dir.Write($"{id}.key", privateKeyPem);
        Tool.Run("openssl", ["cms", "-sign", "-nodetach", "-binary", "-in", contentFile, "-signer", dir.File($"{id}.crt"),
            "-inkey", dir.File($"{id}.key"), "-outform", "DER", "-out", dir.File($"{id}.p7")]).EnsureSuccess();
        return Convert.ToBase64String(File.ReadAllBytes(dir.File($"{id}.p7")));
    }

    /// <summary>A renewal of <paramref name="certificatePem"/> repeated with the new key it was made for (signed now, by the app's
    /// clock) collects <paramref name="renewedSerial"/> (200); with any other key it is refused as already renewed (409).</summary>
    public static async Task RepeatCollectsOnlyTheSameKeyAsync(CertPortalApp app, string mailbox, SubscriberKeyPair newKey, string certificatePem,
        SubscriberKeyPair key, string renewedSerial)
    {
        Task<HttpResponseMessage> RenewAsync(SubscriberKeyPair csrKey) => app.Client.PostAsJsonAsync("/api/v1/renewals", new
        {
            cms = Convert.ToBase64String(SignByKeyIdentifier(csrKey.CreateCsrPem(mailbox), certificatePem, key, app.Clock!.GetUtcNow())),
        });
        var repeat = await RenewAsync(newKey);
        await Http.EnsureStatus(repeat, HttpStatusCode.OK);
        Assert.Equal(renewedSerial, (await repeat.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!.SerialNumber);
        await Http.AssertProblem(await RenewAsync(SubscriberKeyPair.Generate("EC-P256")), HttpStatusCode.Conflict);
    }

    /// <summary>As .NET's SignedCms signs: the signer named by its subject key identifier, signingTime included, the
    /// signer's certificate carried in the message.</summary>
    public static byte[] SignByKeyIdentifier(string csrPem, string certificatePem, SubscriberKeyPair key, DateTimeOffset? signingTime = null)
    {
        using var certificate = X509Certificate2.CreateFromPem(certificatePem);
        using var ecdsa = (ECDsa)key.Load();
        using var withKey = certificate.CopyWithPrivateKey(ecdsa);
        var csr = Convert.FromBase64String(csrPem[PemEncoding.Find(csrPem).Base64Data]);
        var cms = new System.Security.Cryptography.Pkcs.SignedCms(new System.Security.Cryptography.Pkcs.ContentInfo(csr), detached: false);
        var signer = new System.Security.Cryptography.Pkcs.CmsSigner(System.Security.Cryptography.Pkcs.SubjectIdentifierType.SubjectKeyIdentifier, withKey);
        signer.SignedAttributes.Add(new System.Security.Cryptography.Pkcs.Pkcs9SigningTime((signingTime ?? DateTimeOffset.UtcNow).UtcDateTime));
        cms.ComputeSignature(signer);
        return cms.Encode();
    }

    /// <summary>The SignedData with a malformed entry (SEQUENCE { INTEGER 0 }) added to its certificates: outside what the
    /// signature covers, so the message still verifies.</summary>
    public static byte[] WithJunkCertificate(byte[] cms)
    {
        var certificatesTag = new System.Formats.Asn1.Asn1Tag(System.Formats.Asn1.TagClass.ContextSpecific, 0, isConstructed: true);
        var contentInfo = new System.Formats.Asn1.AsnReader(cms, System.Formats.Asn1.AsnEncodingRules.BER).ReadSequence();
        var contentType = contentInfo.ReadObjectIdentifier();
        var signedData = contentInfo.ReadSequence(certificatesTag).ReadSequence();
        var w = new System.Formats.Asn1.AsnWriter(System.Formats.Asn1.AsnEncodingRules.BER);
        using (w.PushSequence())
        {
            w.WriteObjectIdentifier(contentType);
            using (w.PushSequence(certificatesTag))
            using (w.PushSequence())
            {
                for (var i = 0; i < 3; i++) w.WriteEncodedValue(signedData.ReadEncodedValue().Span); // version, digests, content
                using (w.PushSetOf(certificatesTag))
                {
                    if (signedData.PeekTag().HasSameClassAndValue(certificatesTag))
                    {
                        var certificates = signedData.ReadSetOf(certificatesTag);
                        while (certificates.HasData) w.WriteEncodedValue(certificates.ReadEncodedValue().Span);
                    }
                    w.WriteEncodedValue([0x30, 0x03, 0x02, 0x01, 0x00]);
                }
                while (signedData.HasData) w.WriteEncodedValue(signedData.ReadEncodedValue().Span);
            }
        }
        return w.Encode();
    }

    /// <summary>A certificate naming the victim's issuer and serial, self-made for the attacker's key.</summary>
    public static string Forge(string victimPem, SubscriberKeyPair attackerKey)
    {
        using var victim = X509Certificate2.CreateFromPem(victimPem);
        using var key = (ECDsa)attackerKey.Load();
        var request = new CertificateRequest(victim.SubjectName, key, HashAlgorithmName.SHA256);
        using var forged = request.Create(victim.IssuerName, X509SignatureGenerator.CreateForECDsa(key),
            victim.NotBefore, victim.NotAfter, victim.GetSerialNumber().Reverse().ToArray());
        return forged.ExportCertificatePem();
    }

    public static (string Pem, SubscriberKeyPair Key) SelfSigned(string email)
    {
        var key = SubscriberKeyPair.Generate("EC-P256");
        using var ecdsa = (ECDsa)key.Load();
        using var cert = new CertificateRequest($"CN={email}", ecdsa, HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(10));
        return (cert.ExportCertificatePem(), key);
    }

}

/// <summary>Renewed certificates are superseded a day after their successor was issued. The test drives the passes itself: the
/// hosted worker's own pass, a minute after start, could take the pass lock (or the certificate) from the test's call.</summary>
public sealed class SupersedingRenewalApp : CertPortalApp
{
    public SupersedingRenewalApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow);

    // RenewalRegistration adds the worker as AddHostedService(sp => sp.GetRequiredService<SupersedeWorker>()).
    protected override void ConfigureServices(IServiceCollection services)
    {
        foreach (var worker in services.Where(d => d.ServiceType == typeof(Microsoft.Extensions.Hosting.IHostedService) &&
                     d.ImplementationFactory?.Method.ReturnType == typeof(CertPortal.Renewal.SupersedeWorker)).ToList())
            services.Remove(worker);
    }

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Renewal:OpensBeforeExpiry"] = "400.00:00:00",
        ["Renewal:SupersedeAfter"] = "1.00:00:00",
    };
}

public sealed class SupersedeAfterRenewalTests(SupersedingRenewalApp app) : IClassFixture<SupersedingRenewalApp>
{
    [Fact]
    public async Task The_old_certificate_is_revoked_as_superseded_after_the_grace_period()
    {
        Assert.DoesNotContain(app.Services.GetServices<Microsoft.Extensions.Hosting.IHostedService>(), s => s is CertPortal.Renewal.SupersedeWorker);
        // The renewal page's success message says when the old certificate goes, not that it stays valid until it expires.
        var page = await app.Client.GetStringAsync("/renew");
        Assert.Contains("revoked (superseded) 1 day from now", page);
        Assert.DoesNotContain("stays valid until it expires", page);

        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("renewal-supersede");
        var frank = $"frank.{Guid.NewGuid().ToString("N")[..6]}@example.com";
        var (old, key) = await app.IssueAsync(frank, "signing");
        var next = SubscriberKeyPair.Generate("EC-P256");
        var cms = RenewalRequests.Sign(dir, next.CreateCsrPem(frank), old.CertificatePem, key);
        var response = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms });
        await Http.EnsureStatus(response, HttpStatusCode.Created);
        var renewed = (await response.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!;
        var worker = app.Service<CertPortal.Renewal.SupersedeWorker>();

        Assert.Equal(0, await worker.RunOnceAsync(CancellationToken.None));
        Assert.Equal("valid", (await app.GetCertificateAsync(old.SerialNumber)).Status);

        app.Clock!.Advance(TimeSpan.FromDays(1) + TimeSpan.FromMinutes(1));
        Assert.Equal(1, await worker.RunOnceAsync(CancellationToken.None));
        var superseded = await app.GetCertificateAsync(old.SerialNumber);
        Assert.Equal("revoked", superseded.Status);
        Assert.Equal("superseded", superseded.RevocationReason);
        Assert.Equal("valid", (await app.GetCertificateAsync(renewed.SerialNumber)).Status);
        Assert.Equal(0, await worker.RunOnceAsync(CancellationToken.None));

        // A client that lost the answer repeats the renewal (a fresh signature, the same new key): it still collects its
        // certificate from the superseded one, and another key is still refused as already renewed.
        await RenewalRequests.RepeatCollectsOnlyTheSameKeyAsync(app, frank, next, old.CertificatePem, key, renewed.SerialNumber);
    }
}

/// <summary>Renewal switched off (<c>Renewal:Enabled=false</c>) after renewals were made, with a grace period before the renewed
/// certificates are superseded.</summary>
public sealed class SwitchedOffRenewalApp : CertPortalApp
{
    public SwitchedOffRenewalApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow);

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Renewal:Enabled"] = "false",
        ["Renewal:OpensBeforeExpiry"] = "400.00:00:00",
        ["Renewal:SupersedeAfter"] = "1.00:00:00",
    };
}

/// <summary>Switching renewal off stops new renewals, not what renewals already made promised: their holders still collect a
/// lost answer, and the renewed certificates are still superseded when their grace period ends. Before, the switch stopped
/// both: a repeat got 403 (the person never got the certificate issued for them) and the supersede worker did not run (the
/// renewed certificates stayed valid until they expired).</summary>
public sealed class SwitchedOffRenewalTests(SwitchedOffRenewalApp app) : IClassFixture<SwitchedOffRenewalApp>
{
    [Fact]
    public async Task A_renewal_made_before_the_switch_is_still_collected_and_superseded_and_no_new_one_is_made()
    {
        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("renewal-switched-off");
        var run = Guid.NewGuid().ToString("N")[..6];
        var grace = $"grace.{run}@example.com";
        var other = $"other.{run}@example.com";
        var (old, key) = await app.IssueAsync(grace, "signing");
        var (otherCert, otherKey) = await app.IssueAsync(other, "signing");
        var next = SubscriberKeyPair.Generate("EC-P256");

        // Renewed while renewal was on (the setting flipped in the running service, as a restart with another setting would).
        var options = app.Service<CertPortal.Renewal.RenewalOptions>();
        options.Enabled = true;
        HttpResponseMessage response;
        try
        {
            response = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = RenewalRequests.Sign(dir, next.CreateCsrPem(grace), old.CertificatePem, key) });
        }
        finally
        {
            options.Enabled = false;
        }
        await Http.EnsureStatus(response, HttpStatusCode.Created);
        var renewed = (await response.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!;

        // Off now: no new renewal, for anyone.
        var refused = await app.Client.PostAsJsonAsync("/api/v1/renewals",
            new { cms = RenewalRequests.Sign(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(other), otherCert.CertificatePem, otherKey) });
        Assert.Equal("Self-service renewal is switched off.", (await Http.AssertProblem(refused, HttpStatusCode.Forbidden)).GetProperty("title").GetString());
        using (var scope = app.Services.CreateScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortal.Data.CertPortalDbContext>();
            Assert.Equal(1, await db.Certificates.CountAsync(c => c.Email == other));
        }

        // The holder who lost the answer still collects it, with the new key it was made for (another key: already renewed).
        await RenewalRequests.RepeatCollectsOnlyTheSameKeyAsync(app, grace, next, old.CertificatePem, key, renewed.SerialNumber);

        // The supersede worker runs on this node, and its pass revokes the renewed certificate once the grace period is over.
        var worker = app.Service<CertPortal.Renewal.SupersedeWorker>();
        Assert.False(worker.ExecuteTask!.IsCompleted, $"the supersede worker ended ({worker.ExecuteTask.Status}) on a node with renewal switched off");
        app.Clock!.Advance(TimeSpan.FromDays(1) + TimeSpan.FromMinutes(1));
        Assert.Equal(1, await worker.RunOnceAsync(CancellationToken.None));
        Assert.Equal("superseded", (await app.GetCertificateAsync(old.SerialNumber)).RevocationReason);
        Assert.Equal("valid", (await app.GetCertificateAsync(renewed.SerialNumber)).Status);
    }
}
