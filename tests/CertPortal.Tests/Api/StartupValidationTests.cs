using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Api;

/// <summary>A bad setting stops start-up with a message that names the setting.</summary>
public sealed class StartupValidationTests
{
    /// <summary>key=value, plus a working directory configuration when the setting needs one to be read at all.</summary>
    private sealed class MisconfiguredApp(string key, string value) : CertPortalApp
    {
        protected override IDictionary<string, string?> Settings
        {
            get
            {
                var settings = new Dictionary<string, string?>();
                if (key.StartsWith("Directory:", StringComparison.Ordinal) && key != "Directory:Url")
                {
                    settings["Directory:Url"] = "ldaps://ldap.example.test";
                    settings["Directory:BindDn"] = "cn=certportal,dc=example,dc=test";
                    settings["Directory:BindPassword"] = "x";
                    settings["Directory:PeopleBaseDn"] = "ou=people,dc=example,dc=test";
                }
                settings[key] = value;
                return settings;
            }
        }
    }

    [Theory]
    [InlineData("Issuance:ValidityDays", "900", "CertPortal:Issuance:ValidityDays")]
    [InlineData("PublicBaseUrl", "https://pki.example.test", "CertPortal:PublicBaseUrl")]
    [InlineData("PublicBaseUrl", "http://pki.example.test", "CertPortal:PortalUrl")]
    [InlineData("PortalUrl", "http://portal.example.test", "CertPortal:PortalUrl")]
    [InlineData("PortalUrl", "https://portal.example.test/?x=1", "CertPortal:PortalUrl")]
    [InlineData("ReverseProxy:KnownProxies:0", "nginx.example.test", "CertPortal:ReverseProxy:KnownProxies")]
    [InlineData("ReverseProxy:KnownNetworks:0", "10.0.0.0/33", "CertPortal:ReverseProxy:KnownNetworks")]
    [InlineData("Ca:IssuingKeyAlgorithm", "DSA-1024", "CertPortal:Ca:IssuingKeyAlgorithm")]
    [InlineData("Crl:Lifetime", "30.00:00:00", "CertPortal:Crl:Lifetime")]
    [InlineData("Mail:Enabled", "true", "CertPortal:Mail:Host")]
    [InlineData("Mail:ExpiryReminderDays:0", "0", "CertPortal:Mail:ExpiryReminderDays")]
    [InlineData("Mail:Lease", "00:01:00", "CertPortal:Mail:LeaseMargin")]
    [InlineData("Mail:LeaseMargin", "00:00:00", "CertPortal:Mail:LeaseMargin")]
    [InlineData("Directory:Url", "http://ldap.example.test", "CertPortal:Directory:Url")]
    [InlineData("Directory:TrustedCaCertificatesDirectory", "/nonexistent/ca-dir", "CertPortal:Directory:TrustedCaCertificatesDirectory")]
    [InlineData("Directory:StartTls", "true", "CertPortal:Directory:StartTls")]
    [InlineData("Directory:RootPkiEntryDn", "ou=pki,dc=example,dc=test", "CertPortal:Directory:RootPkiEntryDn")]
    [InlineData("Directory:RootPkiEntryDn", "cn=Root,ou=pki,dc=example,dc=test", "CertPortal:Directory:RootPkiEntryDn")]
    [InlineData("Issuance:SubjectCommonName", "DisplayName", "CertPortal:Issuance:OrganizationName")]
    [InlineData("Issuance:SubjectCommonName", "DisplayName", "CertPortal:Issuance:OrganizationIdentifier")]
    [InlineData("Issuance:OrganizationIdentifier", "12345678", "CertPortal:Issuance:OrganizationIdentifier")]
    [InlineData("Issuance:PolicyOids:0", "2.23.140.1.5.3.3", "CertPortal:Issuance:PolicyOids")]
    [InlineData("Escrow:Threshold", "1", "CertPortal:Escrow:Threshold")]
    [InlineData("Escrow:MinimumAgents", "1", "CertPortal:Escrow:MinimumAgents")]
    [InlineData("Escrow:RecoveryRequestLifetime", "00:00:10", "CertPortal:Escrow:RecoveryRequestLifetime")]
    [InlineData("Escrow:Pkcs12Iterations", "1000", "CertPortal:Escrow:Pkcs12Iterations")]
    [InlineData("Escrow:EncryptionKeyGeneration", "Sometimes", "CertPortal:Escrow:EncryptionKeyGeneration")]
    [InlineData("Ocsp:ResponseLifetime", "11.00:00:00", "CertPortal:Ocsp:ResponseLifetime")]
    [InlineData("Ocsp:RefreshAfter", "3.20:00:00", "CertPortal:Ocsp:RefreshAfter")]
    [InlineData("Ocsp:SignerRenewBefore", "2.00:00:00", "CertPortal:Ocsp:SignerRenewBefore")]
    public async Task Bad_setting_stops_start_up_naming_it(string key, string value, string named)
    {
        var app = new MisconfiguredApp(key, value);
        try
        {
            var e = await Record.ExceptionAsync(app.InitializeAsync);
            Assert.NotNull(e);
            Assert.Contains(named, e.ToString());
        }
        finally
        {
            TempDir.Delete(app.DataDirectory);
        }
    }

    private sealed class RemindedApp(string reminderDays) : CertPortalApp
    {
        protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>(Mail.MailApp.MailSettings(2525))
        {
            ["Mail:ExpiryReminderDays:0"] = "7",
            ["Mail:ExpiryReminderDays:1"] = reminderDays,
        };
    }

    /// <summary>A reminder sent before renewal opens (default 60 days) leads to a page that says it is too early.</summary>
    [Fact]
    public async Task A_reminder_before_the_renewal_window_opens_stops_start_up_naming_both_settings()
    {
        var app = new RemindedApp("90");
        try
        {
            var e = await Record.ExceptionAsync(app.InitializeAsync);
            Assert.NotNull(e);
            Assert.Contains("CertPortal:Renewal:OpensBeforeExpiry", e.ToString());
            Assert.Contains("CertPortal:Mail:ExpiryReminderDays", e.ToString());
        }
        finally
        {
            TempDir.Delete(app.DataDirectory);
        }

        var fits = new RemindedApp("60");
        await fits.InitializeAsync();
        await fits.DisposeAsync();
    }
}
