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
        if (o.Enabled && mail.Value is { Enabled: true, ReminderDays: [var first, ..] } && TimeSpan.FromDays(first) > o.OpensBeforeExpiry)
            errors.Add($"{p}:OpensBeforeExpiry ({o.OpensBeforeExpiry.TotalDays:0.##} days) must be at least the first of {Mail.MailOptions.SectionName}:ExpiryReminderDays " +
                $"({first} days): that reminder's renewal link would lead to a page saying it is too early.");
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
