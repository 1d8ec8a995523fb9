using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using CertPortal.Gal;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Gal;

/// <summary>A PKI entry the directory's operator made before us, as a plain CRL distribution point (RFC 4523's
/// cRLDistributionPoint: cn and the revocation lists, no cACertificate).</summary>
public sealed class ExistingPkiEntryTests(Slapd ldap) : IClassFixture<Slapd>
{
    private LdapDirectory Directory => new(new DirectoryOptions
    {
        Url = ldap.Url, BindDn = Slapd.RootDn, BindPassword = Slapd.RootPassword, PeopleBaseDn = Slapd.PeopleDn,
    });

    [Fact]
    public async Task A_crl_distribution_point_without_pkiCA_gets_the_crl_and_the_ca_certificates()
    {
        var cn = $"CDP {Guid.NewGuid():N}";
        var dn = $"cn={cn},ou=pki,{Slapd.Suffix}";
        ldap.Modify($"""
            dn: {dn}
            objectClass: cRLDistributionPoint
            cn: {cn}
            """, add: true);
        var (caDer, crl) = CaAndCrl();

        await Directory.PublishCaAndCrlAsync(dn, [caDer], crl, null, fence: null);

        var entry = ldap.Search(dn, "(objectClass=*)", "*");
        Assert.Equal(crl, Assert.Single(Slapd.BinaryValues(entry, "certificateRevocationList;binary")));
        Assert.Equal(caDer, Assert.Single(Slapd.BinaryValues(entry, "cACertificate;binary")));
        Assert.Contains("cRLDistributionPoint", Slapd.TextValues(entry, "objectClass"));
    }

    /// <summary>A throwaway CA's certificate and a CRL it signed listing <paramref name="revoked"/> serial numbers (each entry
    /// some 25 bytes: 20,000 make half a megabyte).</summary>
    internal static (byte[] CaDer, byte[] Crl) CaAndCrl(int revoked = 0)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=Test CDP CA", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        using var ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        var builder = new CertificateRevocationListBuilder();
        var at = DateTimeOffset.UtcNow.AddHours(-1);
        for (var i = 0; i < revoked; i++) builder.AddEntry(Encoding.ASCII.GetBytes($"serial-{i:D12}"), at);
        return (ca.RawData, builder.Build(ca, 1, DateTimeOffset.UtcNow.AddDays(7), HashAlgorithmName.SHA256));
    }
}
