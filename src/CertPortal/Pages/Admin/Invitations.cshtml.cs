using System.Globalization;
using System.Text;
using CertPortal.Auditing;
using CertPortal.Mail;
using CertPortal.Security;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace CertPortal.Pages.Admin;

/// <summary>Bulk invitations from a CSV upload: the console's face of <c>POST /api/v1/invitations</c>.</summary>
[Authorize(Policy = Policies.Admin)]
public sealed class InvitationsModel(Invitations invitations, MailOptions mail, CertPortalOptions options,
    Gal.DirectoryEnrollmentOptions fromDirectory, Gal.DirectoryEnrollment directoryEnrollment) : PageModel
{
    /// <summary>1000 rows of mailbox, name, profile and hours fit easily.</summary>
    private const long MaxCsvBytes = 200 * 1024;

    [BindProperty] public IFormFile? Csv { get; set; }
    [BindProperty] public string Profile { get; set; } = "dual";
    [BindProperty] public int ValidHours { get; set; }
    /// <summary>The form's Idempotency-Key, made when the form is shown: a form sent twice (a double click, the browser's
    /// "resend" on reload) invites each person once, and the second answer shows the first one's results.</summary>
    [BindProperty] public string? SubmissionKey { get; set; }
    public bool MailEnabled => mail.Enabled;
    public string? Error { get; private set; }
    public BulkInvitationResult? Result { get; private set; }
    public bool DirectoryEnrollmentEnabled => fromDirectory.Enabled;
    public Gal.DirectoryEnrollmentReport? DirectoryResult { get; private set; }

    public void OnGet()
    {
        ValidHours = options.Issuance.DefaultTokenValidHours;
        NewSubmissionKey();
    }

    /// <summary>The form as shown next is a new list.</summary>
    private void NewSubmissionKey()
    {
        ModelState.Remove(nameof(SubmissionKey));
        SubmissionKey = Guid.NewGuid().ToString("N");
    }

    public async Task<IActionResult> OnPostAsync(CancellationToken ct)
    {
        if (Csv is null || Csv.Length == 0) Error = "Choose a CSV file with one person per line.";
        else if (Csv.Length > MaxCsvBytes) Error = $"The file is larger than {MaxCsvBytes / 1024} KiB; split it.";
        else
        {
            string text;
            using (var reader = new StreamReader(Csv.OpenReadStream(), Encoding.UTF8, detectEncodingFromByteOrderMarks: true))
                text = await reader.ReadToEndAsync(ct);
            var rows = InvitationCsv.Parse(text);
            var outcome = await invitations.InviteManyAsync(new BulkInvitationRequest(rows, Profile, ValidHours), AuditLog.ActorOf(User), ct,
                idempotencyKey: string.IsNullOrEmpty(SubmissionKey) ? null : SubmissionKey);
            if (outcome.Failure is { Kind: FailureKind.Conflict })
            {
                // The same form's first sending is still inviting: sent again once it has finished, this one shows its results.
                Error = "This list is still being sent from your first click. Wait a moment, then send the form again to see the results (nobody is invited twice).";
                return Page();
            }
            if (outcome.Failure is { Title: Invitations.KeyReusedTitle })
                Error = "This form was already used to send another list. It is ready again: choose the file and send it.";
            else if (outcome.Failure is { } f) Error = f.Detail;
            else Result = outcome.Value;
        }
        NewSubmissionKey();
        return Page();
    }

    /// <summary>The console button of directory-driven enrollment: a dry run lists, a run invites.</summary>
    public async Task<IActionResult> OnPostDirectoryAsync(bool dryRun, CancellationToken ct)
    {
        ValidHours = options.Issuance.DefaultTokenValidHours;
        NewSubmissionKey();
        var outcome = await directoryEnrollment.RunAsync(new Gal.DirectoryEnrollmentRequest(dryRun), AuditLog.ActorOf(User), ct);
        if (outcome.Failure is { } f) Error = f.Detail; else DirectoryResult = outcome.Value;
        return Page();
    }
}

/// <summary>Reads <c>email,displayName,profile,validHours</c> lines (RFC 4180 quoting, so a name may hold a comma).
/// Blank lines are skipped; a first line starting with "email" is a header. A line that cannot be read becomes a
/// row without a mailbox, which the invitation then reports as failed.</summary>
public static class InvitationCsv
{
    public static IReadOnlyList<InvitationRow?> Parse(string text)
    {
        var rows = new List<InvitationRow?>();
        var lines = text.ReplaceLineEndings("\n").Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            if (string.IsNullOrWhiteSpace(line)) continue;
            var fields = Fields(line);
            if (rows.Count == 0 && i == 0 && fields[0].Trim().Equals("email", StringComparison.OrdinalIgnoreCase)) continue;
            string? Field(int n) => fields.Count > n && !string.IsNullOrWhiteSpace(fields[n]) ? fields[n].Trim() : null;
            int? hours = int.TryParse(Field(3), NumberStyles.None, CultureInfo.InvariantCulture, out var h) ? h : null;
            rows.Add(new InvitationRow(Field(0), Field(1), Field(2), Field(3) is null ? null : hours ?? -1));
        }
        return rows;
    }

    private static List<string> Fields(string line)
    {
        var fields = new List<string>();
        var current = new StringBuilder();
        var quoted = false;
        for (var i = 0; i < line.Length; i++)
        {
            var c = line[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < line.Length && line[i + 1] == '"') { current.Append('"'); i++; }
                else if (c == '"') quoted = false;
                else current.Append(c);
            }
            else if (c == '"') quoted = true;
            else if (c == ',') { fields.Add(current.ToString()); current.Clear(); }
            else current.Append(c);
        }
        fields.Add(current.ToString());
        return fields;
    }
}
