using CertPortal.Gal;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Gal;

/// <summary>The LDAP gateway itself against a real slapd, with mailboxes built to break a filter or DN.</summary>
public sealed class HostileMailboxTests(Slapd ldap) : IClassFixture<Slapd>
{
    private LdapDirectory Directory => new(new DirectoryOptions
    {
        Url = ldap.Url, BindDn = Slapd.RootDn, BindPassword = Slapd.RootPassword, PeopleBaseDn = Slapd.PeopleDn,
    });

    [Theory]
    [InlineData("a*)(uid=*))(|(uid=*@example.test")]
    [InlineData("*@example.test")]
    [InlineData(@"x\2a,cn=admin@example.test")]
    [InlineData("comma,plus+eq=semi;@example.test")]
    public async Task Hostile_mailbox_is_stored_and_found_exactly_and_never_matches_another_entry(string hostile)
    {
        var victim = $"victim.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var victimCert = SelfSigned(victim);
        var hostileCert = SelfSigned("hostile");
        await Directory.PublishCertificateAsync(victim, "Victim", victimCert);

        await Directory.PublishCertificateAsync(hostile, "Mallory *)(cn=*", hostileCert);

        Assert.Equal(hostileCert, Assert.Single(await Directory.GetCertificatesAsync(hostile)));
        Assert.Equal(victimCert, Assert.Single(await Directory.GetCertificatesAsync(victim)));
        // The real client finds the hostile entry by its exact (escaped) mail, once.
        var entry = ldap.Search(Slapd.PeopleDn, $"(mail={DirectoryApp.Escape(hostile)})", "mail");
        Assert.Equal([hostile], Slapd.TextValues(entry, "mail"));

        Assert.True(await Directory.RemoveCertificateAsync(hostile, hostileCert));
        Assert.Empty(await Directory.GetCertificatesAsync(hostile));
        Assert.Equal(victimCert, Assert.Single(await Directory.GetCertificatesAsync(victim)));
    }

    private static byte[] SelfSigned(string cn)
    {
        using var key = System.Security.Cryptography.ECDsa.Create();
        return new System.Security.Cryptography.X509Certificates.CertificateRequest($"CN={Guid.NewGuid():N}", key,
                System.Security.Cryptography.HashAlgorithmName.SHA256)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1)).RawData;
    }
}
