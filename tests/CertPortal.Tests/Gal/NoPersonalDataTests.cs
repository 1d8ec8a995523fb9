using System.Net;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Gal;

public sealed class NoPersonalDataDirectoryApp : DirectoryApp
{
    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["Directory:PublishPersonalData"] = "false";
            return settings;
        }
    }
}

/// <summary>Organisations that publish only serial numbers and revocation status: CRLs and CA
/// certificates on the PKI entry, nothing about people.</summary>
public sealed class NoPersonalDataTests(NoPersonalDataDirectoryApp app) : IClassFixture<NoPersonalDataDirectoryApp>
{
    [Fact]
    public async Task Only_crls_and_ca_certificates_are_published()
    {
        var email = $"private.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (cert, _) = await app.IssueAsync(email, "dual");
        Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(cert.SerialNumber, "superseded")).StatusCode);
        await app.WaitForDirectoryAsync();
        Assert.Equal("", app.Ldap.Search(Slapd.PeopleDn, $"(mail={DirectoryApp.Escape(email)})", "*").Trim());
        var pki = app.Ldap.Search(Slapd.PkiDn, "(objectClass=*)", "*");
        Assert.Equal(await app.Client.GetByteArrayAsync("/crl/issuing.crl"), Assert.Single(Slapd.BinaryValues(pki, "certificateRevocationList;binary")));
    }
}
