using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Mail;

/// <summary>A queued, sent or failed message as operators see it: never the link it carries. <see cref="Postponed"/>: why a queued
/// message waits for something other than the SMTP server (a reminder whose certificate is on hold), looked at again at
/// <see cref="NextAttemptAt"/>; null otherwise.</summary>
public sealed record NotificationView(long Id, string Kind, string Recipient, string Subject, string Status, DateTimeOffset CreatedAt,
    int Attempts, DateTimeOffset? NextAttemptAt, string? Postponed, string? LastError, DateTimeOffset? SentAt, DateTimeOffset? FailedAt);

public sealed record NotificationPage(int Page, int PageSize, int Total, IReadOnlyList<NotificationView> Notifications);

/// <summary>The mail outbox for the console and <c>GET /api/v1/notifications</c>. The subject is the one sent (the outbox records it
/// when it sends); a reminder still waiting shows the subject it would be sent with now, the days left counted from now, as the
/// outbox will count them (<see cref="ExpiryReminders.AsSentAt"/>), not those of the day it was queued. A waiting reminder the outbox
/// keeps for its certificate (on hold) says so (<see cref="ExpiryReminders.PostponedBecause"/>), as the certificate is now: the outbox
/// leaves no error on it, and without the reason it read as due and not sent.</summary>
public sealed class Notifications(CertPortalDbContext db, MailOptions options, TimeProvider time)
{
    public static readonly IReadOnlyList<string> Statuses = ["queued", "sent", "failed"];

    public async Task<Outcome<NotificationPage>> ListAsync(string? status, string? kind, string? recipient, int? page, int? pageSize, CancellationToken ct)
    {
        if (!string.IsNullOrWhiteSpace(status) && !Statuses.Contains(status))
            return Failure.BadRequest($"status must be one of {string.Join(", ", Statuses)}.");
        if (!string.IsNullOrWhiteSpace(kind) && !OutboundMessageKinds.All.Contains(kind))
            return Failure.BadRequest($"kind must be one of {string.Join(", ", OutboundMessageKinds.All)}.");
        var p = page ?? 1;
        var size = pageSize ?? 50;
        if (p < 1 || size is < 1 or > 500) return Failure.BadRequest("page must be at least 1 and pageSize between 1 and 500.");

        var q = db.OutboundMessages.AsNoTracking();
        q = status switch
        {
            "queued" => q.Where(m => m.SentAt == null && m.FailedAt == null),
            "sent" => q.Where(m => m.SentAt != null),
            "failed" => q.Where(m => m.FailedAt != null),
            _ => q,
        };
        if (!string.IsNullOrWhiteSpace(kind)) q = q.Where(m => m.Kind == kind);
        if (!string.IsNullOrWhiteSpace(recipient)) q = q.Where(m => m.Recipient == recipient.Trim());
        var total = await q.CountAsync(ct);
        var rows = await q.OrderByDescending(m => m.Id).Skip(Paging.Offset(p, size)).Take(size).ToListAsync(ct);
        var now = time.GetUtcNow();
        var postponed = await PostponedRemindersAsync(rows, now, ct);
        return new NotificationPage(p, size, total, rows.Select(m => new NotificationView(m.Id, m.Kind, m.Recipient, SubjectAsListed(m, now), m.Status,
            m.CreatedAt, m.Attempts, m.Status == "queued" ? m.NextAttemptAt : null, postponed.GetValueOrDefault(m.Id), m.LastError, m.SentAt, m.FailedAt)).ToList());
    }

    /// <summary>Why each waiting reminder of the page is kept for its certificate, by message id: one query for the page.</summary>
    private async Task<Dictionary<long, string>> PostponedRemindersAsync(List<OutboundMessage> rows, DateTimeOffset now, CancellationToken ct)
    {
        var waiting = rows.Where(m => m.Kind == OutboundMessageKinds.ExpiryReminder && m.Status == "queued")
            .Select(m => (m.Id, Serial: ExpiryReminders.SerialOf(m.DedupeKey))).ToList();
        if (waiting.Count == 0) return [];
        var serials = waiting.Select(w => w.Serial).Distinct().ToList();
        var certificates = await db.Certificates.AsNoTracking().Where(c => serials.Contains(c.SerialNumber))
            .Select(c => new { c.SerialNumber, c.RevokedAt, c.RevocationReason, c.NotAfter, c.RenewedBy }).ToDictionaryAsync(c => c.SerialNumber, ct);
        // Renewals on hold, which keep their predecessors' reminders too (MailOutbox.CheckReminderAsync).
        var successors = certificates.Values.Select(c => c.RenewedBy).OfType<string>().ToList();
        var heldRenewals = successors.Count == 0 ? [] : (await db.Certificates.AsNoTracking().OnHoldAt(now)
            .Where(c => successors.Contains(c.SerialNumber)).Select(c => c.SerialNumber).ToListAsync(ct)).ToHashSet(StringComparer.Ordinal);
        var postponed = new Dictionary<long, string>();
        foreach (var (id, serial) in waiting)
        {
            if (!certificates.TryGetValue(serial, out var c)) continue;
            if ((ExpiryReminders.PostponedBecause(c.RevokedAt, c.RevocationReason, c.NotAfter, now)
                 ?? (c.RenewedBy is { } next && heldRenewals.Contains(next) ? ExpiryReminders.RenewalOnHold : null)) is { } why)
                postponed[id] = why;
        }
        return postponed;
    }

    private string SubjectAsListed(OutboundMessage m, DateTimeOffset now) =>
        m.Kind == OutboundMessageKinds.ExpiryReminder && m.Status == "queued"
            ? MailTemplates.Subject(m.Kind, ExpiryReminders.AsSentAt(MessageModel.FromJson(m.Model), now), options.OrganizationName)
            : m.Subject;
}
