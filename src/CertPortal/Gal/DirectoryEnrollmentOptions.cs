using CertPortal.Enrollment;
using CertPortal.Mail;
using Microsoft.Extensions.Options;

namespace CertPortal.Gal;

/// <summary>Section <c>CertPortal:DirectoryEnrollment</c>: invite the people of the LDAP directory who have a mailbox and
/// no valid certificate (auto-enrollment for organisations without Windows). Needs <c>Directory:Url</c> and mail.</summary>
public sealed class DirectoryEnrollmentOptions
{
    public const string SectionName = "CertPortal:DirectoryEnrollment";

    public bool Enabled { get; set; }
    /// <summary>Where people are searched (subtree). Empty: <c>Directory:PeopleBaseDn</c>.</summary>
    public string BaseDn { get; set; } = "";
    /// <summary>Only members of this group (groupOfNames member / groupOfUniqueNames uniqueMember). Empty: everyone.</summary>
    public string GroupDn { get; set; } = "";
    public string Profile { get; set; } = "dual";
    /// <summary>How long the mailed links work. Empty: <c>Issuance:DefaultTokenValidHours</c>.</summary>
    public int? ValidHours { get; set; }
    /// <summary>How often a scheduled run starts (one node runs it). Empty: only on demand (API or console).</summary>
    public TimeSpan? Interval { get; set; } = TimeSpan.FromDays(1);
    /// <summary>A person invited (by anyone) for this profile is not invited again for this long, nor while that link still works.</summary>
    public TimeSpan ReinviteAfter { get; set; } = TimeSpan.FromDays(14);
    /// <summary>At most this many invitations per run; the rest wait for the next run.</summary>
    public int MaxInvitationsPerRun { get; set; } = 500;
}

public sealed class DirectoryEnrollmentOptionsValidator(IOptions<DirectoryOptions> directory, IOptions<MailOptions> mail)
    : IValidateOptions<DirectoryEnrollmentOptions>
{
    public ValidateOptionsResult Validate(string? name, DirectoryEnrollmentOptions o)
    {
        const string p = DirectoryEnrollmentOptions.SectionName;
        var errors = new List<string>();
        if (!Names.TryParseProfile(o.Profile, out _)) errors.Add($"{p}:Profile must be one of signing, encryption, dual.");
        if (o.ValidHours is < 1) errors.Add($"{p}:ValidHours must be positive.");
        if (o.Interval is { } i && i < TimeSpan.FromMinutes(1)) errors.Add($"{p}:Interval must be at least one minute (or empty: on demand only).");
        if (o.ReinviteAfter < TimeSpan.FromHours(1)) errors.Add($"{p}:ReinviteAfter must be at least one hour.");
        if (o.MaxInvitationsPerRun is < 1 or > 100_000) errors.Add($"{p}:MaxInvitationsPerRun must be between 1 and 100000.");
        if (o.Enabled)
        {
            if (!directory.Value.IsEnabled) errors.Add($"{p}:Enabled needs the LDAP directory ({DirectoryOptions.SectionName}:Url).");
            if (string.IsNullOrWhiteSpace(o.BaseDn) && string.IsNullOrWhiteSpace(directory.Value.PeopleBaseDn))
                errors.Add($"{p}:BaseDn (or {DirectoryOptions.SectionName}:PeopleBaseDn) must name where people are searched.");
            if (!mail.Value.Enabled) errors.Add($"{p}:Enabled needs mail ({MailOptions.SectionName}:Enabled): people are invited by e-mail.");
        }
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
