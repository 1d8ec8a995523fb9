namespace CertPortal.Tests.Gal;

/// <summary>The same slapd over ldap:// upgraded with StartTLS.</summary>
public sealed class StartTlsDirectoryApp() : DirectoryApp(tls: true)
{
    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["Directory:StartTls"] = "true";
            settings["Directory:TrustedCaCertificatesDirectory"] = Ldap.TrustedCaDirectory;
            return settings;
        }
    }
}

public sealed class StartTlsPublishingTests(StartTlsDirectoryApp app) : IClassFixture<StartTlsDirectoryApp>
{
    [Fact]
    public async Task Certificates_are_published_after_starttls_to_a_directory_that_refuses_plain_binds()
    {
        Assert.NotEqual(0, app.Ldap.PlainBind().ExitCode);
        var email = $"starttls.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (cert, _) = await app.IssueAsync(email, "signing");
        await app.WaitForDirectoryAsync();
        Assert.Equal(Convert.FromBase64String(LdapsPublishingTests.Pem(cert.CertificatePem)), Assert.Single(app.PublishedCertificates(email)));
    }
}
