using System.DirectoryServices.Protocols;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Gal;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Gal;

/// <summary>Part of the people tree held by another server: a subordinate referral object (RFC 3296) under PeopleBaseDn, or
/// PeopleBaseDn itself being one. A search then answers with a continuation reference (or result 10 referral) in place of
/// the entries over there; we never follow referrals (they would be bound with our credentials), so we cannot know whether
/// the person lives there. Read as "no such person", OpenLdap mode created a second entry for someone who already had one.</summary>
public sealed class DirectoryReferralTests(Slapd ldap) : IClassFixture<Slapd>
{
    private const string PartnersDn = "ou=partners," + Slapd.PeopleDn;
    private const string ElsewhereDn = "ou=elsewhere," + Slapd.Suffix;

    private LdapDirectory Directory(string peopleBaseDn = Slapd.PeopleDn, bool createMissingEntries = true) => new(new DirectoryOptions
    {
        Url = ldap.Url, BindDn = Slapd.RootDn, BindPassword = Slapd.RootPassword, PeopleBaseDn = peopleBaseDn,
        CreateMissingEntries = createMissingEntries,
    });

    [Fact]
    public async Task A_person_behind_a_subordinate_referral_is_not_created_again_here()
    {
        ldap.AddReferral(PartnersDn, "partners");
        var email = $"partner.{Guid.NewGuid().ToString("N")[..8]}@example.test";

        var publish = await Assert.ThrowsAsync<DirectoryOperationFailedException>(
            () => Directory().PublishCertificateAsync(email, "Partner", Certificate(email)));
        Assert.Equal(ResultCode.Referral, publish.ResultCode);
        Assert.Contains("ldap://partner.example.test/", publish.Message);
        // Reading and removing find nothing to do here (we never write to the referred server); it is creating that must not happen.
        Assert.Empty((await Directory().GetPublishedAsync(email)).Certificates);
        Assert.False(await Directory().RemoveCertificateAsync(email, Certificate(email)));

        Assert.DoesNotContain("dn:", ldap.Search(Slapd.PeopleDn, $"(mail={email})", "dn"), StringComparison.Ordinal);
    }

    /// <summary>Active Directory answers a subtree search from a domain's root with continuation references to its DNS and
    /// configuration partitions, for every search: where no entry is created, they must not turn "no such person" into a failure
    /// (a revoked certificate's removal for someone who left would fail for ever).</summary>
    [Fact]
    public async Task Without_creating_entries_a_referral_beside_the_people_changes_nothing()
    {
        ldap.AddReferral(PartnersDn, "partners");
        var email = $"gone.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var directory = Directory(createMissingEntries: false);

        Assert.False(await directory.RemoveCertificateAsync(email, Certificate(email)));
        Assert.Empty((await directory.GetPublishedAsync(email)).Certificates);
        await Assert.ThrowsAsync<DirectoryEntryNotFoundException>(() => directory.PublishCertificateAsync(email, "Gone", Certificate(email)));
    }

    [Fact]
    public async Task A_person_found_here_beside_a_subordinate_referral_is_published_as_before()
    {
        ldap.AddReferral(PartnersDn, "partners");
        var email = $"local.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        ldap.Modify($"""
            dn: mail={email},{Slapd.PeopleDn}
            objectClass: inetOrgPerson
            mail: {email}
            cn: Local
            sn: Local
            """, add: true);
        var der = Certificate(email);

        var published = await Directory().PublishCertificateAsync(email, "Local", der);

        Assert.False(published.EntryCreated);
        Assert.Equal(der, Assert.Single(Slapd.BinaryValues(ldap.Search(Slapd.PeopleDn, $"(mail={email})", "*"), "userCertificate;binary")));
    }

    [Fact]
    public async Task A_people_base_that_is_itself_a_referral_is_a_failure_not_an_empty_directory()
    {
        ldap.AddReferral(ElsewhereDn, "elsewhere");
        var email = $"elsewhere.{Guid.NewGuid().ToString("N")[..8]}@example.test";

        var publish = await Assert.ThrowsAsync<DirectoryOperationFailedException>(
            () => Directory(ElsewhereDn).PublishCertificateAsync(email, "Elsewhere", Certificate(email)));
        Assert.Equal(ResultCode.Referral, publish.ResultCode);
        Assert.DoesNotContain("dn:", ldap.Search(Slapd.Suffix, $"(mail={email})", "dn"), StringComparison.Ordinal);
    }

    private static byte[] Certificate(string email)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={email}", key, HashAlgorithmName.SHA256);
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        return cert.RawData;
    }
}
