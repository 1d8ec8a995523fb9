using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;

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

/// <summary>ldaps:// to a server whose certificate comes from a CA nobody told CertPortal to trust.</summary>
public sealed class UntrustedLdapsDirectoryApp() : DirectoryApp(tls: true)
{
    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["Directory:Url"] = Ldap.LdapsUrl;
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

public sealed class UntrustedDirectoryTests(UntrustedLdapsDirectoryApp app) : IClassFixture<UntrustedLdapsDirectoryApp>
{
    [Fact]
    public async Task An_untrusted_directory_certificate_is_refused_and_publication_waits_without_failing_enrollment()
    {
        var email = $"untrusted.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (cert, _) = await app.IssueAsync(email, "signing"); // enrollment does not wait for the directory
        Assert.Equal("valid", (await app.GetCertificateAsync(cert.SerialNumber)).Status);

        JsonElement queue;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        do
        {
            queue = await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/directory/publications");
            if (queue.GetProperty("failing").GetInt32() > 0) break;
            await Task.Delay(100);
        }
        while (DateTime.UtcNow < deadline);
        Assert.True(queue.GetProperty("failing").GetInt32() > 0, queue.ToString());
        Assert.Contains("Cannot connect/bind to ldaps://", queue.ToString());
        Assert.Equal("", app.Ldap.Search(Slapd.PeopleDn, $"(mail={DirectoryApp.Escape(email)})", "*").Trim());
    }
}
