using CertPortal.Gal;
using Microsoft.Extensions.Time.Testing;

namespace CertPortal.Tests.Gal;

public sealed class ClockedDirectoryApp : DirectoryApp
{
    public ClockedDirectoryApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow);

    // A fake clock jumping a year fires periodic timers once per period on the way: keep periods long
    // (the test drives the outbox itself).
    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["Directory:PollInterval"] = "01:00:00";
            settings["Crl:CheckInterval"] = "1.00:00:00";
            return settings;
        }
    }
}

/// <summary>Expiry needs no revocation: the row written at issuance removes the certificate at notAfter.</summary>
public sealed class DirectoryExpiryTests(ClockedDirectoryApp app) : IClassFixture<ClockedDirectoryApp>
{
    [Fact]
    public async Task Expired_certificate_leaves_the_directory_at_not_after_and_not_before()
    {
        var email = $"expiring.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (cert, _) = await app.IssueAsync(email, "encryption");
        var outbox = app.Service<DirectoryOutbox>();
        await outbox.ProcessDueAsync(CancellationToken.None);
        Assert.Single(app.PublishedCertificates(email));

        // A day before notAfter nothing changes...
        app.Clock!.SetUtcNow(cert.NotAfter.AddDays(-1));
        await outbox.ProcessDueAsync(CancellationToken.None);
        Assert.Single(app.PublishedCertificates(email));

        // ...after it, the scheduled row removes the certificate.
        app.Clock.SetUtcNow(cert.NotAfter.AddMinutes(1));
        await outbox.ProcessDueAsync(CancellationToken.None);
        Assert.Empty(app.PublishedCertificates(email));
        Assert.Equal("expired", (await app.GetCertificateAsync(cert.SerialNumber)).Status);
    }
}
