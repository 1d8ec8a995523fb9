using Microsoft.Extensions.Options;

namespace CertPortal.Renewal;

/// <summary>Section <c>CertPortal:Renewal</c>: self-service renewal, proven by the key of the certificate renewed.</summary>
public sealed class RenewalOptions
{
    public const string SectionName = "CertPortal:Renewal";

    public bool Enabled { get; set; } = true;
    /// <summary>How long before its expiry a certificate may be renewed. At least as long as the first expiry reminder
    /// (<c>Mail:ExpiryReminderDays</c>), whose link leads to renewal, when mail is on (<see cref="RenewalOptionsValidator"/>).</summary>
    public TimeSpan OpensBeforeExpiry { get; set; } = TimeSpan.FromDays(60);
    /// <summary>Whether a renewal may certify the old key again. Off: a new key every time (the default), so a key
    /// that leaked unnoticed does not live on.</summary>
    public bool AllowKeyReuse { get; set; }
    /// <summary>How far the request's signingTime may be from now: a captured request cannot be replayed later.</summary>
    public TimeSpan MaxSignatureAge { get; set; } = TimeSpan.FromMinutes(10);
    /// <summary>When set, a renewed certificate is revoked as <c>superseded</c> this long after its successor was
    /// issued (time to install the new one everywhere). Empty: it stays valid until it expires.</summary>
    public TimeSpan? SupersedeAfter { get; set; }
    /// <summary>How long a renewal may rely on the validation of the mailbox made when its chain was enrolled (see
    /// <see cref="Data.IssuedCertificate.MailboxValidatedAt"/>): older, the holder enrols again with an invitation. At most
    /// <see cref="MaxMailboxValidationReuse"/>.</summary>
    public TimeSpan MailboxValidationReuse { get; set; } = MaxMailboxValidationReuse;

    /// <summary>S/MIME BR 4.2.1 (1): a completed validation of mailbox authorization or control is obtained no more than 398 days
    /// before a certificate is issued on it (control of the mail domain or mail server, 3.2.2.1 and 3.2.2.3: the organisation
    /// that runs this CA for its own domains); a validation by a random value mailed to the mailbox alone (3.2.2.2) no more than
    /// 30 days. The BR bound the issuance, not the life of what is issued (that is 6.3.2's 825 days), so a renewal made on the
    /// last day lives its full term.</summary>
    public static readonly TimeSpan MaxMailboxValidationReuse = TimeSpan.FromDays(398);

    /// <summary>The last moment a renewal may be issued on a mailbox validated at <paramref name="validatedAt"/>.</summary>
    public DateTimeOffset RenewableUntil(DateTimeOffset validatedAt) => validatedAt + MailboxValidationReuse;
}

/// <param name="mail">For the reminders' days: a reminder sent before the renewal window opens leads to a page that says
/// "too early" (the README asked to keep them apart; now a start-up refuses it).</param>
public sealed class RenewalOptionsValidator(IOptions<Mail.MailOptions> mail) : IValidateOptions<RenewalOptions>
{
    public ValidateOptionsResult Validate(string? name, RenewalOptions o)
    {
        const string p = RenewalOptions.SectionName;
        var errors = new List<string>();
        if (o.OpensBeforeExpiry <= TimeSpan.Zero || o.OpensBeforeExpiry > TimeSpan.FromDays(825))
            errors.Add($"{p}:OpensBeforeExpiry must be positive and at most 825 days (the longest certificate life).");
        if (o.MaxSignatureAge < TimeSpan.FromMinutes(1) || o.MaxSignatureAge > TimeSpan.FromDays(90))
            errors.Add($"{p}:MaxSignatureAge must be between 1 minute and 90 days.");
        if (o.SupersedeAfter is { } s && (s < TimeSpan.Zero || s > TimeSpan.FromDays(825)))
            errors.Add($"{p}:SupersedeAfter must be between zero and 825 days, or empty (never).");
        if (o.MailboxValidationReuse < TimeSpan.FromDays(1) || o.MailboxValidationReuse > RenewalOptions.MaxMailboxValidationReuse)
            errors.Add($"{p}:MailboxValidationReuse must be between 1 day and {RenewalOptions.MaxMailboxValidationReuse.TotalDays:0} days " +
                "(S/MIME Baseline Requirements 4.2.1: 398 days for the organisation's validated mail domain, 30 for a link mailed to the mailbox alone).");
        if (o.Enabled && mail.Value is { Enabled: true, ReminderDays: [var first, ..] } && TimeSpan.FromDays(first) > o.OpensBeforeExpiry)
            errors.Add($"{p}:OpensBeforeExpiry ({o.OpensBeforeExpiry.TotalDays:0.##} days) must be at least the first of {Mail.MailOptions.SectionName}:ExpiryReminderDays " +
                $"({first} days): that reminder's renewal link would lead to a page saying it is too early.");
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
