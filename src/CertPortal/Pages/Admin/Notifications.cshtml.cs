using CertPortal.Mail;
using CertPortal.Security;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace CertPortal.Pages.Admin;

/// <summary>The mail outbox: what was sent, what waits (and why), what failed. Never a link.</summary>
[Authorize(Policy = Policies.Audit)]
public sealed class NotificationsModel(Notifications notifications, MailOptions mail) : PageModel
{
    public bool MailEnabled => mail.Enabled;
    public string? Status { get; private set; }
    public string? Recipient { get; private set; }
    public int PageNumber { get; private set; }
    public string? Error { get; private set; }
    public NotificationPage Result { get; private set; } = new(1, 50, 0, []);

    public async Task OnGetAsync(string? status, string? recipient, int? p, CancellationToken ct)
    {
        Status = string.IsNullOrWhiteSpace(status) ? null : status;
        Recipient = recipient;
        PageNumber = Math.Max(p ?? 1, 1);
        var outcome = await notifications.ListAsync(Status, null, recipient, PageNumber, 50, ct);
        if (outcome.Failure is { } f) Error = f.Detail;
        else Result = outcome.Value!;
    }
}
