using Microsoft.Extensions.Options;

namespace CertPortal.Mail;

/// <summary>How the SMTP connection is protected.</summary>
public enum SmtpSecurity
{
    /// <summary>Plain SMTP: only for a relay on the same host (loopback), where nothing crosses a network.</summary>
    None,
    /// <summary>SMTP submission upgraded with STARTTLS (RFC 3207), usually port 587. Refuses a server without it.</summary>
    StartTls,
    /// <summary>TLS from the first byte (RFC 8314 implicit TLS), usually port 465.</summary>
    Tls,
}

/// <summary>Section <c>CertPortal:Mail</c>: invitations, expiry reminders and revocation notices by e-mail.
/// Off unless <see cref="Enabled"/>; messages then wait in the outbox (table OutboundMessages) until
/// the SMTP server takes them.</summary>
public sealed class MailOptions
{
    public const string SectionName = "CertPortal:Mail";

    public bool Enabled { get; set; }
    public string Host { get; set; } = "";
    /// <summary>0: the usual port for <see cref="Security"/> (25, 587 or 465).</summary>
    public int Port { get; set; }
    public SmtpSecurity Security { get; set; } = SmtpSecurity.StartTls;
    /// <summary>Empty: no SMTP authentication.</summary>
    public string UserName { get; set; } = "";
    /// <summary>Never logged; sent only over TLS unless the server is on loopback.</summary>
    public string Password { get; set; } = "";
    /// <summary>The sender's address, e.g. pki@example.com. Replies go there.</summary>
    public string From { get; set; } = "";
    /// <summary>The name messages are sent in (sender name, greeting, signature). Empty: CertPortal:Ca:OrganizationName.</summary>
    public string OrganizationName { get; set; } = "";
    /// <summary>Days before a certificate expires on which its holder is reminded, each once, e.g. [30, 7].</summary>
    public List<int> ExpiryReminderDays { get; set; } = [];

    /// <summary>How often the outbox looks for due messages and reminders (new messages are also sent at once).</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMinutes(1);
    /// <summary>First retry after a failure; doubles per attempt up to <see cref="RetryMaxDelay"/>.</summary>
    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromMinutes(1);
    public TimeSpan RetryMaxDelay { get; set; } = TimeSpan.FromHours(1);
    /// <summary>How long a node owns a message it has claimed; past it another node may send the message. A send never
    /// outlives it: it is given up <see cref="LeaseMargin"/> before the lease ends, and the message's final dot (the
    /// moment the server takes it) goes only while a whole <see cref="Timeout"/> remains for the server's answer.</summary>
    public TimeSpan Lease { get; set; } = TimeSpan.FromMinutes(5);
    /// <summary>How long before its lease ends a send is given up: room for the abandoned connection to close, and for this
    /// node's clock to run at another rate than the database's during one lease (or be stepped). Not for the nodes' clocks
    /// disagreeing: leases are written and compared on the database's clock (<see cref="Data.LeaseClock"/>).</summary>
    public TimeSpan LeaseMargin { get; set; } = TimeSpan.FromSeconds(10);
    /// <summary>For each SMTP operation (MailKit's timeout), not for a whole send: a server answering every command
    /// just in time can make one send last many timeouts, which <see cref="Lease"/> bounds.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    public int EffectivePort => Port != 0 ? Port : Security switch
    {
        SmtpSecurity.None => 25,
        SmtpSecurity.Tls => 465,
        _ => 587,
    };

    /// <summary>Reminder days, largest first and without repeats.</summary>
    public IReadOnlyList<int> ReminderDays => ExpiryReminderDays.Distinct().OrderDescending().ToList();
}

public sealed class MailOptionsValidator : IValidateOptions<MailOptions>
{
    public ValidateOptionsResult Validate(string? name, MailOptions o)
    {
        const string p = MailOptions.SectionName;
        var errors = new List<string>();
        foreach (var d in o.ExpiryReminderDays)
            if (d is < 1 or > 825)
                errors.Add($"{p}:ExpiryReminderDays contains {d}; each must be between 1 and 825 days.");
        if (o.PollInterval < TimeSpan.FromMilliseconds(100)) errors.Add($"{p}:PollInterval must be at least 100 ms.");
        if (o.RetryBaseDelay <= TimeSpan.Zero || o.RetryMaxDelay < o.RetryBaseDelay)
            errors.Add($"{p}:RetryBaseDelay must be positive and {p}:RetryMaxDelay not shorter than it.");
        if (o.Timeout < TimeSpan.FromSeconds(1)) errors.Add($"{p}:Timeout must be at least 1 s.");
        if (o.LeaseMargin < TimeSpan.FromSeconds(1)) errors.Add($"{p}:LeaseMargin must be at least 1 s.");
        // A send is given up LeaseMargin before its lease ends and sends the final dot only while a whole Timeout remains for
        // the answer; the commands before the dot need at least one more Timeout.
        if (o.Lease < o.LeaseMargin + 2 * o.Timeout)
            errors.Add($"{p}:Lease ({o.Lease}) must be at least {p}:LeaseMargin ({o.LeaseMargin}) plus twice {p}:Timeout ({o.Timeout}): " +
                "a send must end before another node may take the message over, and leave each SMTP answer a whole Timeout.");
        if (!o.Enabled) return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);

        if (string.IsNullOrWhiteSpace(o.Host) || Uri.CheckHostName(o.Host) == UriHostNameType.Unknown)
            errors.Add($"{p}:Host must be the SMTP server's host name or address when {p}:Enabled is true, got '{o.Host}'.");
        if (o.Port is < 0 or > 65535) errors.Add($"{p}:Port must be between 1 and 65535 (0: the usual port for {p}:Security).");
        if (!Enum.IsDefined(o.Security)) errors.Add($"{p}:Security must be None, StartTls or Tls.");
        if (!Mailbox.TryNormalize(o.From, out _, out var fromError))
            errors.Add($"{p}:From must be the sender's mail address when {p}:Enabled is true: {fromError}");
        if (string.IsNullOrEmpty(o.UserName) != string.IsNullOrEmpty(o.Password))
            errors.Add($"{p}:UserName and {p}:Password are set together or not at all.");
        // A password over plain SMTP would cross the network readable; on loopback nothing does.
        if (o.Security == SmtpSecurity.None && !string.IsNullOrEmpty(o.Password) && !IsLoopback(o.Host))
            errors.Add($"{p}:Security None sends {p}:Password in the clear; use StartTls or Tls for '{o.Host}'.");
        if (o.OrganizationName.Any(char.IsControl)) errors.Add($"{p}:OrganizationName must be printable.");
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static bool IsLoopback(string host) =>
        host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || (System.Net.IPAddress.TryParse(host, out var ip) && System.Net.IPAddress.IsLoopback(ip));
}
