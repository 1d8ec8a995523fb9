using System.Collections.Concurrent;
using System.Globalization;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Mail;

/// <summary>The service with mail on, sending to a real SMTP server (aiosmtpd) on loopback, every log line captured.</summary>
public class MailApp : CertPortalApp
{
    public const string From = "pki@example.test";
    public const string Organization = "Example Org";

    public SmtpServer Smtp { get; } = new();
    public ConcurrentQueue<string> Logs { get; } = new();

    protected override IDictionary<string, string?> Settings => MailSettings(Smtp.Port);

    /// <summary>Mail settings for a test: quick polls and retries so an outage is over in seconds.</summary>
    public static Dictionary<string, string?> MailSettings(int smtpPort) => new()
    {
        ["Mail:Enabled"] = "true",
        ["Mail:Host"] = "127.0.0.1",
        ["Mail:Port"] = smtpPort.ToString(CultureInfo.InvariantCulture),
        ["Mail:Security"] = "None",
        ["Mail:From"] = From,
        ["Mail:OrganizationName"] = Organization,
        ["Mail:PollInterval"] = "00:00:00.250",
        ["Mail:RetryBaseDelay"] = "00:00:00.250",
        ["Mail:RetryMaxDelay"] = "00:00:01",
        ["Mail:Timeout"] = "00:00:10",
    };

    protected override void ConfigureServices(IServiceCollection services) => CapturingLoggerProvider.AddTo(services, Logs);

    public override async Task InitializeAsync()
    {
        await Smtp.InitializeAsync();
        await base.InitializeAsync();
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await Smtp.DisposeAsync();
    }
}
