namespace CertPortal.Tests.Gal;

/// <summary>Publishing to a slapd that refuses simple binds without TLS, over ldaps://.</summary>
public sealed class LdapsDirectoryApp() : DirectoryApp(tls: true)
{
    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["Directory:Url"] = Ldap.LdapsUrl;
            settings["Directory:TrustedCaCertificatesDirectory"] = Ldap.TrustedCaDirectory;
            return settings;
        }
    }
}

public sealed class LdapsPublishingTests(LdapsDirectoryApp app) : IClassFixture<LdapsDirectoryApp>
{
    [Fact]
    public async Task Certificates_are_published_over_ldaps_to_a_directory_that_refuses_plain_binds()
    {
        Assert.NotEqual(0, app.Ldap.PlainBind().ExitCode); // the server really insists on TLS
        var email = $"tls.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (cert, _) = await app.IssueAsync(email, "encryption", "RSA-2048");
        await app.WaitForDirectoryAsync();
        Assert.Equal(Convert.FromBase64String(Pem(cert.CertificatePem)), Assert.Single(app.PublishedCertificates(email)));
    }

    internal static string Pem(string pem) => string.Concat(pem.Split('\n').Where(l => !l.StartsWith("-----", StringComparison.Ordinal)).Select(l => l.Trim()));
}
