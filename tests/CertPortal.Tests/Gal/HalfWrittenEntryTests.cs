using System.Security.Cryptography.X509Certificates;
using CertPortal.Data;
using CertPortal.Gal;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Gal;

/// <summary>A certificate is written to userCertificate and userSMIMECertificate by two modifications; a node killed or a
/// directory lost between them leaves the attributes different. The next reconciliation of the entry must repair each
/// attribute on its own (seen in the three-node test: a revoked certificate still carried in userSMIMECertificate).</summary>
public sealed class HalfWrittenEntryTests(DirectoryApp app) : IClassFixture<DirectoryApp>
{
    private async Task SyncAsync(string email)
    {
        using var scope = app.Service<IServiceScopeFactory>().CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        await scope.ServiceProvider.GetRequiredService<DirectoryPublisher>().SyncPersonAsync(db, email, fence: null, CancellationToken.None);
    }

    private string Dn(string email) => app.Person(email).Split('\n').First(l => l.StartsWith("dn: ", StringComparison.Ordinal))[4..].Trim();

    private List<byte[]> Smime(string email) =>
        Slapd.BinaryValues(app.Person(email), "userSMIMECertificate")
            .SelectMany(v => SmimeCertificateBundle.TryReadCertificates(v, out var certs) ? certs : []).ToList();

    /// <summary>A new mailbox's encryption certificate, issued and published.</summary>
    private async Task<(string Email, EnrollmentResponse Certificate, byte[] Der)> PublishedEncryptionCertificateAsync()
    {
        var email = $"half.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (cert, _) = await app.IssueAsync(email, "encryption");
        await app.WaitForDirectoryAsync();
        using var x509 = X509Certificate2.CreateFromPem(cert.CertificatePem);
        return (email, cert, x509.RawData);
    }

    [Fact]
    public async Task A_publication_cut_off_before_userSMIMECertificate_is_completed_by_the_next_reconciliation()
    {
        var (email, _, der) = await PublishedEncryptionCertificateAsync();
        Assert.Equal(der, Assert.Single(Smime(email)));

        app.Ldap.Modify($"dn: {Dn(email)}\nchangetype: modify\ndelete: userSMIMECertificate\n");
        Assert.Empty(Smime(email));
        Assert.Single(app.PublishedCertificates(email)); // userCertificate still holds it

        await SyncAsync(email);
        Assert.Equal(der, Assert.Single(Smime(email)));
        Assert.Equal(der, Assert.Single(app.PublishedCertificates(email)));
    }

    [Fact]
    public async Task A_removal_cut_off_before_userSMIMECertificate_is_completed_by_the_next_reconciliation()
    {
        var (email, cert, der) = await PublishedEncryptionCertificateAsync();
        (await app.RevokeAsync(cert.SerialNumber, "keyCompromise")).EnsureSuccessStatusCode();
        await app.WaitForDirectoryAsync();
        Assert.Empty(app.PublishedCertificates(email));

        // userCertificate was cleared, userSMIMECertificate not: put its value back as a cut-off removal leaves it.
        app.Ldap.Modify($"dn: {Dn(email)}\nchangetype: modify\nreplace: userSMIMECertificate\nuserSMIMECertificate:: {Convert.ToBase64String(SmimeCertificateBundle.Create(der))}\n");
        Assert.Single(Smime(email));

        await SyncAsync(email);
        Assert.Empty(Smime(email));
        Assert.Empty(app.PublishedCertificates(email));
    }
}
