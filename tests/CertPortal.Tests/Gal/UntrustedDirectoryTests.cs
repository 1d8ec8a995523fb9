using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Gal;

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
