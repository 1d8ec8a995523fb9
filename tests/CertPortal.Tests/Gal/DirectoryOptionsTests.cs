using CertPortal.Gal;

namespace CertPortal.Tests.Gal;

/// <summary><see cref="DirectoryOptions.Validate"/> on its own (start-up refuses what it lists; StartupValidationTests shows that).</summary>
public sealed class DirectoryOptionsTests
{
    [Theory]
    [InlineData("cn=CertPortal CA,ou=pki,dc=example,dc=test")]
    [InlineData("CN=CertPortal CA, OU=pki, DC=example, DC=test")]
    [InlineData("cn=certportal  ca,ou=PKI,dc=Example,dc=Test")]
    public void The_root_ca_entry_written_otherwise_is_still_the_issuing_ca_entry(string rootPkiEntryDn)
    {
        var options = new DirectoryOptions
        {
            Url = "ldap://ldap.example.test", BindDn = "cn=certportal,dc=example,dc=test", BindPassword = "secret",
            PeopleBaseDn = "ou=people,dc=example,dc=test", PkiEntryDn = "cn=CertPortal CA,ou=pki,dc=example,dc=test", RootPkiEntryDn = rootPkiEntryDn,
        };
        Assert.Contains("CertPortal:Directory:RootPkiEntryDn must differ from PkiEntryDn", options.Validate());
    }
}
