using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography.Pkcs;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Revocation;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Gal;

/// <summary>Publication to a real slapd, checked with the real ldapsearch.</summary>
[Collection(nameof(DirectoryPublishingTests))]
public sealed class DirectoryPublishingTests(DirectoryApp app) : IClassFixture<DirectoryApp>
{
    private static string NewMailbox(string prefix) => $"{prefix}.{Guid.NewGuid().ToString("N")[..8]}@example.test";

    [Fact]
    public async Task Issued_certificate_is_on_the_person_entry_byte_identical_and_as_smime_pkcs7()
    {
        var email = NewMailbox("alice");
        var token = await app.CreateTokenAsync(email, "dual", displayName: "Alice Example");
        var issued = await app.EnrollAsync(token.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email));
        await app.WaitForDirectoryAsync();

        var entry = app.Person(email);
        using var cert = X509Certificate2.CreateFromPem(issued.CertificatePem);
        var published = Assert.Single(Slapd.BinaryValues(entry, "userCertificate;binary"));
        Assert.Equal(cert.RawData, published);
        Assert.Equal(["Alice Example"], Slapd.TextValues(entry, "displayName"));
        Assert.Equal([email], Slapd.TextValues(entry, "mail"));
        Assert.Equal(["Alice Example"], Slapd.TextValues(entry, "cn"));

        var smime = Assert.Single(Slapd.BinaryValues(entry, "userSMIMECertificate"));
        var cms = new SignedCms();
        cms.Decode(smime);
        Assert.Equal(cert.RawData, Assert.Single(cms.Certificates).RawData);
    }

    [Fact]
    public async Task Revocation_removes_the_certificate_and_the_pki_entry_holds_the_served_crl_and_ca_certificates()
    {
        var email = NewMailbox("bob");
        var (keep, _) = await app.IssueAsync(email, "signing");
        var (revoke, _) = await app.IssueAsync(email, "encryption");
        await app.WaitForDirectoryAsync();
        Assert.Equal(2, app.PublishedCertificates(email).Count);

        Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(revoke.SerialNumber, "keyCompromise")).StatusCode);
        await app.WaitForDirectoryAsync();
        var left = Assert.Single(app.PublishedCertificates(email));
        Assert.Equal(X509Certificate2.CreateFromPem(keep.CertificatePem).RawData, left);
        Assert.Single(Slapd.BinaryValues(app.Person(email), "userSMIMECertificate"));

        var pki = app.Ldap.Search(Slapd.PkiDn, "(objectClass=*)", "*");
        var servedCrl = await app.Client.GetByteArrayAsync("/crl/issuing.crl");
        Assert.Equal(servedCrl, Assert.Single(Slapd.BinaryValues(pki, "certificateRevocationList;binary")));
        var caCerts = Slapd.BinaryValues(pki, "cACertificate;binary");
        Assert.Contains(await app.Client.GetByteArrayAsync("/ca/issuing.crt"), caCerts);
        Assert.Contains(await app.Client.GetByteArrayAsync("/ca/root.crt"), caCerts);
    }

    [Fact]
    public async Task The_root_ca_has_its_own_pki_entry_with_its_certificate_and_every_new_root_crl()
    {
        await app.WaitForDirectoryAsync();
        var rootCert = await app.Client.GetByteArrayAsync("/ca/root.crt");
        var before = app.Ldap.Search(Slapd.RootPkiDn, "(objectClass=*)", "*");
        Assert.Equal(await app.Client.GetByteArrayAsync("/crl/root.crl"), Assert.Single(Slapd.BinaryValues(before, "certificateRevocationList;binary")));
        Assert.Equal(rootCert, Assert.Single(Slapd.BinaryValues(before, "cACertificate;binary")));

        // A root CRL alone (the refresh worker signs one at half its lifetime, with no issuing-CA CRL beside it)
        // reaches the directory too.
        using (var scope = app.Service<IServiceScopeFactory>().CreateScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            await using var tx = await db.Database.BeginTransactionAsync();
            await scope.ServiceProvider.GetRequiredService<CrlSigner>().SignAsync(db, CertificateAuthority.RootName, DateTimeOffset.UtcNow, "test", default);
            await db.SaveChangesAsync();
            await tx.CommitAsync();
        }
        // Served from memory: the publisher loads a CRL another signer made within Crl:CheckInterval; now, here.
        await app.Service<CrlPublisher>().PublishAsync(default);
        await app.WaitForDirectoryAsync();
        var served = await app.Client.GetByteArrayAsync("/crl/root.crl");
        var after = Assert.Single(Slapd.BinaryValues(app.Ldap.Search(Slapd.RootPkiDn, "(objectClass=*)", "*"), "certificateRevocationList;binary"));
        Assert.Equal(served, after);
        Assert.NotEqual(Assert.Single(Slapd.BinaryValues(before, "certificateRevocationList;binary")), after);
        Assert.Equal(rootCert, Assert.Single(Slapd.BinaryValues(app.Ldap.Search(Slapd.RootPkiDn, "(objectClass=*)", "*"), "cACertificate;binary")));
    }

    [Fact]
    public async Task Hold_removes_and_release_restores()
    {
        var email = NewMailbox("carol");
        var (cert, _) = await app.IssueAsync(email, "dual");
        await app.WaitForDirectoryAsync();
        Assert.Single(app.PublishedCertificates(email));

        Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(cert.SerialNumber, "certificateHold")).StatusCode);
        await app.WaitForDirectoryAsync();
        Assert.Empty(app.PublishedCertificates(email));

        Assert.Equal(HttpStatusCode.OK, (await app.Admin.PostAsync($"/api/v1/certificates/{cert.SerialNumber}/release", null)).StatusCode);
        await app.WaitForDirectoryAsync();
        Assert.Single(app.PublishedCertificates(email));
    }

    [Fact]
    public async Task Renewal_replaces_the_superseded_certificate_of_the_same_profile()
    {
        var email = NewMailbox("dave");
        await app.IssueAsync(email, "encryption");
        var (renewed, _) = await app.IssueAsync(email, "encryption");
        await app.WaitForDirectoryAsync();
        Assert.Equal(X509Certificate2.CreateFromPem(renewed.CertificatePem).RawData, Assert.Single(app.PublishedCertificates(email)));
    }

    [Fact]
    public async Task Directory_down_enrollment_and_revocation_still_succeed_and_the_outbox_catches_up_exactly()
    {
        var emails = Enumerable.Range(0, 3).Select(i => NewMailbox($"down{i}")).ToList();
        await app.Ldap.StopAsync();
        try
        {
            var issued = new List<(string Email, string Serial)>();
            foreach (var email in emails)
            {
                issued.Add((email, (await app.IssueAsync(email, "signing")).Cert.SerialNumber));
                issued.Add((email, (await app.IssueAsync(email, "encryption")).Cert.SerialNumber));
            }
            Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(issued[1].Serial, "superseded")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(issued[2].Serial, "certificateHold")).StatusCode);

            // The outbox shows the failures while the directory is down.
            var deadline = DateTime.UtcNow.AddSeconds(20);
            JsonElement queue;
            do
            {
                await Task.Delay(200);
                queue = await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/directory/publications");
            }
            while (queue.GetProperty("failing").GetInt32() == 0 && DateTime.UtcNow < deadline);
            Assert.True(queue.GetProperty("failing").GetInt32() > 0, queue.ToString());
            Assert.Contains(queue.GetProperty("items").EnumerateArray(), i => i.GetProperty("lastError").GetString()?.Length > 0);
        }
        finally
        {
            await app.Ldap.StartAsync();
        }

        await app.WaitForDirectoryAsync(60);
        foreach (var email in emails) await AssertDirectoryMatchesDatabaseAsync(email);
        // emails[0]: encryption cert revoked; emails[1]: signing cert on hold.
        Assert.Single(app.PublishedCertificates(emails[0]));
        Assert.Single(app.PublishedCertificates(emails[1]));
        Assert.Equal(2, app.PublishedCertificates(emails[2]).Count);
    }

    [Fact]
    public async Task Resync_repairs_changes_made_behind_our_back_and_leaves_other_cas_alone()
    {
        var email = NewMailbox("erin");
        var (valid, _) = await app.IssueAsync(email, "signing");
        var (revoked, _) = await app.IssueAsync(email, "encryption");
        Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(revoked.SerialNumber, "affiliationChanged")).StatusCode);
        await app.WaitForDirectoryAsync();

        var dn = $"mail={email},{Slapd.PeopleDn}";
        var validDer = X509Certificate2.CreateFromPem(valid.CertificatePem).RawData;
        var revokedDer = X509Certificate2.CreateFromPem(revoked.CertificatePem).RawData;
        using var foreignKey = System.Security.Cryptography.ECDsa.Create();
        var foreign = new CertificateRequest($"CN={email}", foreignKey, System.Security.Cryptography.HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30)).RawData;
        // Someone deletes our valid certificate, puts the revoked one back, and another CA adds its own.
        app.Ldap.Modify($"""
            dn: {dn}
            changetype: modify
            delete: userCertificate;binary
            userCertificate;binary:: {Convert.ToBase64String(validDer)}
            -
            add: userCertificate;binary
            userCertificate;binary:: {Convert.ToBase64String(revokedDer)}
            userCertificate;binary:: {Convert.ToBase64String(foreign)}
            """);
        // And an entry the database knows nothing about gets one of our certificates.
        var stray = NewMailbox("stray");
        app.Ldap.Modify($"""
            dn: mail={stray},{Slapd.PeopleDn}
            objectClass: inetOrgPerson
            mail: {stray}
            cn: Stray
            sn: Stray
            userCertificate;binary:: {Convert.ToBase64String(validDer)}
            """, add: true);

        await ResyncAsync();

        var now = app.PublishedCertificates(email);
        Assert.Equal(2, now.Count);
        Assert.Contains(validDer, now);
        Assert.Contains(foreign, now);
        Assert.DoesNotContain(revokedDer, now);
        Assert.Empty(app.PublishedCertificates(stray));
        Assert.Contains("directory.resync", await app.Admin.GetStringAsync("/api/v1/audit?action=directory.resync"));
    }

    [Fact]
    public async Task Certificates_issued_under_two_spellings_of_one_mailbox_are_both_published_and_stay_after_a_resync()
    {
        // LDAP finds the entry by mail without regard to case, so both certificates belong on it. Reconciling one spelling used
        // to keep only the certificates spelt exactly so, removing the other's.
        var email = NewMailbox("carol");
        var capitalised = char.ToUpperInvariant(email[0]) + email[1..];
        var (lower, _) = await app.IssueAsync(email, "signing");
        var (upper, _) = await app.IssueAsync(capitalised, "encryption");
        await app.WaitForDirectoryAsync();
        var both = new[] { lower, upper }.Select(c => X509Certificate2.CreateFromPem(c.CertificatePem).RawData).ToList();
        Assert.Equal(2, app.PublishedCertificates(email).Count);
        Assert.All(both, der => Assert.Contains(der, app.PublishedCertificates(email)));

        await ResyncAsync();
        Assert.Equal(2, app.PublishedCertificates(capitalised).Count);
        Assert.All(both, der => Assert.Contains(der, app.PublishedCertificates(email)));
    }

    [Fact]
    public async Task An_entry_with_two_mail_values_keeps_the_valid_certificates_of_both_mailboxes_also_after_a_resync()
    {
        // inetOrgPerson's mail is multi-valued (aliases); the entry is found by either. Reconciling it under one mailbox used to
        // remove the valid certificates issued to the other, and a resync's sweep names an entry by its first mail value only.
        var email = NewMailbox("grace");
        var alias = NewMailbox("g.alias");
        app.Ldap.Modify($"""
            dn: cn=Grace {Guid.NewGuid():N},{Slapd.PeopleDn}
            objectClass: inetOrgPerson
            cn: Grace
            sn: Grace
            mail: {alias}
            mail: {email}
            """, add: true);
        var (own, _) = await app.IssueAsync(email, "signing");
        await app.WaitForDirectoryAsync();
        var (aliased, _) = await app.IssueAsync(alias, "encryption");
        await app.WaitForDirectoryAsync();
        var both = new[] { own, aliased }.Select(c => X509Certificate2.CreateFromPem(c.CertificatePem).RawData).ToList();
        Assert.Equal(2, app.PublishedCertificates(email).Count);
        Assert.All(both, der => Assert.Contains(der, app.PublishedCertificates(email)));

        await ResyncAsync();
        Assert.Equal(2, app.PublishedCertificates(alias).Count);
        Assert.All(both, der => Assert.Contains(der, app.PublishedCertificates(email)));
        Assert.Equal(2, Slapd.BinaryValues(app.Person(email), "userSMIMECertificate").Count);
    }

    [Fact]
    public async Task Resync_and_publication_list_need_the_right_role()
    {
        using var anonymous = new HttpClient { BaseAddress = new Uri(app.BaseUrl) };
        await Http.AssertProblem(await anonymous.PostAsync("/api/v1/directory/resync", null), HttpStatusCode.Unauthorized);
        await Http.AssertProblem(await anonymous.GetAsync("/api/v1/directory/publications"), HttpStatusCode.Unauthorized);
        var (_, auditor) = await app.CreateAccountAsync("dir-auditor-" + Guid.NewGuid().ToString("N")[..6], "auditor");
        Assert.Equal(HttpStatusCode.OK, (await auditor.GetAsync("/api/v1/directory/publications")).StatusCode);
        await Http.AssertProblem(await auditor.PostAsync("/api/v1/directory/resync", null), HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task Hostile_display_name_is_stored_exactly_and_found_only_by_its_own_mail()
    {
        var email = NewMailbox("frank");
        const string hostile = "Frank *)(mail=*))(|(cn=* \\ \"Boss\", Jr.; <x>+#";
        var token = await app.CreateTokenAsync(email, "signing", displayName: hostile);
        await app.EnrollAsync(token.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email));
        await app.WaitForDirectoryAsync();
        var entry = app.Person(email);
        Assert.Equal([hostile], Slapd.TextValues(entry, "displayName"));
        Assert.Single(entry.Split('\n'), l => l.StartsWith("dn", StringComparison.Ordinal));
    }

    /// <summary>A resync through the API, waited out: its person and PKI rows, then those its sweep queued for the next pass.</summary>
    private async Task ResyncAsync()
    {
        Assert.Equal(HttpStatusCode.Accepted, (await app.Admin.PostAsync("/api/v1/directory/resync", null)).StatusCode);
        await app.WaitForDirectoryAsync();
        await Task.Delay(500);
        await app.WaitForDirectoryAsync();
    }

    private async Task AssertDirectoryMatchesDatabaseAsync(string email)
    {
        var valid = await app.Client.GetAsync($"/api/v1/directory/{email}/certificates");
        var expected = valid.StatusCode == HttpStatusCode.NotFound ? [] :
            (await valid.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("certificates").EnumerateArray()
            .Select(c => X509Certificate2.CreateFromPem(c.GetProperty("certificatePem").GetString()).RawData).ToList();
        var published = app.PublishedCertificates(email);
        Assert.Equal(expected.Count, published.Count);
        foreach (var der in expected) Assert.Contains(der, published);
        Assert.Equal(published.Count, Slapd.BinaryValues(app.Person(email), "userSMIMECertificate").Count);
    }
}
