using System.Globalization;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Enrollment;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Mail;

/// <summary>Finds certificates that have entered a reminder window (<c>Mail:ExpiryReminderDays</c>) and queues one
/// reminder per certificate and window. The dedupe key (serial, window) is unique in the database, so however
/// many nodes look, and however often, each reminder is queued once.
/// <para>A certificate that enters several windows at once (the service was down, or time jumped) gets only the
/// nearest one: a 30-day reminder after the 7-day one would mislead. A window longer than the certificate's whole
/// life is skipped (a 5-day certificate gets no "30 days left" on the day it is issued), and so is a certificate
/// whose holder already has newer valid ones that serve its every use (the same profile, or a dual one): they have renewed, or
/// been given a dual ID instead (<see cref="CertificateProfile.ServedBy"/>); so is one whose mail domain is no longer in
/// <c>AllowedDomains</c>, which nothing can renew. Once the domain is back, such a reminder is queued if still due, and one the outbox
/// gave up for that alone is queued again in its own row (<see cref="MailQueue.RequeueAsync"/>): the key stays single.</para></summary>
public sealed class ExpiryReminders(CertPortalDbContext db, MailQueue queue, MailOptions options, CertPortalOptions portal, Renewal.RenewalOptions renewal,
    Escrow.KeyArchive archive, TimeProvider time, ILogger<ExpiryReminders> logger)
{
    // Bounds the parameters of one IN (...) list (SQLite allows 32766; PostgreSQL 65535).
    private const int Chunk = 500;

    /// <summary>A reminder as it is sent at <paramref name="now"/>: it states the days left then, not when it was queued (it may have
    /// waited for the SMTP server: "expires in 30 days" ten days later was wrong by ten). The outbox sends it so, and its listing
    /// shows a waiting one's subject so.</summary>
    public static MessageModel AsSentAt(MessageModel reminder, DateTimeOffset now) =>
        reminder.NotAfter is { } notAfter ? reminder with { Days = DaysLeft(notAfter, now) } : reminder;

    /// <summary>Whether a reminder sent at <paramref name="now"/> may offer the renewal link: renewal on, the certificate not renewed
    /// before, and its mailbox validation still one a renewal may rely on (<see cref="Renewal.RenewalOptions.RenewableUntil"/>).
    /// Queueing and the outbox's check before sending decide alike.</summary>
    internal static bool Renewable(Renewal.RenewalOptions renewal, bool renewed, DateTimeOffset mailboxValidatedAt, DateTimeOffset now) =>
        renewal.Enabled && !renewed && now <= renewal.RenewableUntil(mailboxValidatedAt);

    /// <summary>How the outbox's error begins for a reminder it gave up because its mail domain was off <c>AllowedDomains</c> (the SMTP
    /// error that kept it waiting may follow). Queueing looks for it: such a reminder is queued again once the domain is back.</summary>
    private const string DomainOffTheList = "Not sent: this CA no longer issues certificates for '";

    /// <summary>Why the outbox gives up a reminder whose mail domain was taken off <c>AllowedDomains</c> while it waited.</summary>
    internal static string DomainNotAllowed(string email) =>
        $"{DomainOffTheList}{Mailbox.Domain(email)}' (CertPortal:AllowedDomains), so it cannot be renewed.";

    /// <summary>The certificate a reminder's dedupe key ("{serial}:{days}") is about.</summary>
    internal static string SerialOf(string dedupeKey) => dedupeKey.Split(':')[0];

    /// <summary>Why a reminder that is due is kept for later instead of sent or given up, or null when nothing about its certificate keeps
    /// it: the certificate is on hold (and not yet expired). Were it failed, its (serial, day) key would stay taken and the release would
    /// queue none. The outbox decides so before sending, and its listing says so beside the message, live, from the same rule.</summary>
    internal static string? PostponedBecause(DateTimeOffset? revokedAt, RevocationReason? reason, DateTimeOffset notAfter, DateTimeOffset now) =>
        revokedAt is { } since && reason == RevocationReason.CertificateHold && notAfter > now
            ? $"the certificate is on hold (since {since.UtcDateTime.ToString("u", CultureInfo.InvariantCulture)}): sent once it is released"
            : null;

    /// <summary>Why a reminder waits whose certificate's renewal is on hold (<see cref="MailOutbox"/> keeps it: sent now, it would tell a
    /// holder who has renewed to ask for an invitation).</summary>
    internal const string RenewalOnHold = "its renewal is on hold: not sent once the renewal is released, sent if it is revoked for good";

    private static int DaysLeft(DateTimeOffset notAfter, DateTimeOffset now) => Math.Max(1, (int)Math.Ceiling((notAfter - now).TotalDays));

    public async Task<int> QueueDueAsync(CancellationToken ct)
    {
        var days = options.ReminderDays;
        if (days.Count == 0) return 0;
        var now = time.GetUtcNow();
        var horizon = now.AddDays(days[0]);
        var expiring = await db.Certificates.AsNoTracking()
            .Where(c => c.RevokedAt == null && c.NotAfter > now && c.NotAfter <= horizon)
            .Select(c => new { c.SerialNumber, c.Email, c.DisplayName, c.Profile, c.NotBefore, c.NotAfter, c.RenewedBy, c.MailboxValidatedAt })
            .ToListAsync(ct);
        if (expiring.Count == 0) return 0;

        var due = new List<(string Key, int Window, (string SerialNumber, string Email, string DisplayName, string Profile, DateTimeOffset NotAfter, bool Renewed, DateTimeOffset MailboxValidatedAt) Cert)>();
        foreach (var batch in expiring.Chunk(Chunk))
        {
            // A successor under another spelling of the mailbox is still the holder's (mailboxes compare without regard to case,
            // through the index on lower("Email")).
            var mailboxes = batch.Select(c => c.Email.ToLowerInvariant()).Distinct().ToList();
#pragma warning disable CA1862 // EF Core translates ToLower() to lower(), not string.Equals(..., OrdinalIgnoreCase)
            var successors = await db.Certificates.AsNoTracking()
                .Where(c => mailboxes.Contains(c.Email.ToLower()) && c.RevokedAt == null && c.NotAfter > now)
                .Select(c => new { c.Email, c.Profile, c.NotBefore, c.NotAfter }).ToListAsync(ct);
#pragma warning restore CA1862
            foreach (var c in batch)
            {
                // A domain taken off AllowedDomains gets no more certificates: the reminder's renewal link (or the invitation it
                // suggests) would be refused with 403 "Domain not allowed.".
                if (!Mailbox.DomainAllowed(c.Email, portal.AllowedDomains)) continue;
                var remaining = c.NotAfter - now;
                var lifetime = c.NotAfter - c.NotBefore;
                var windows = days.Where(d => remaining <= TimeSpan.FromDays(d) && lifetime > TimeSpan.FromDays(d)).ToList();
                if (windows.Count == 0) continue;
                var newer = successors.Where(s => string.Equals(s.Email, c.Email, StringComparison.OrdinalIgnoreCase) && s.NotAfter > c.NotAfter && s.NotBefore <= now)
                    .Select(s => s.Profile).ToList();
                // Newer IDs that serve its every use (a dual one serves signing and encryption) replace it: their holder renewed,
                // or was given a dual ID instead, and the old ID's link would renew it beside them.
                if (CertificateProfile.ServedBy(c.Profile, newer)) continue;
                var window = windows.Min();
                due.Add(($"{c.SerialNumber}:{window}", window, (c.SerialNumber, c.Email, c.DisplayName, Names.Of(c.Profile), c.NotAfter, c.RenewedBy is not null, c.MailboxValidatedAt)));
            }
        }

        var queued = 0;
        var policy = due.Count == 0 ? null : await archive.PolicyAsync(db, ct);
        foreach (var batch in due.Chunk(Chunk))
        {
            var keys = batch.Select(d => d.Key).ToList();
            // A reminder the outbox gave up only because its domain was off AllowedDomains (never sent) is queued again in its row, now
            // that the domain is allowed and the reminder is still the one due: the (kind, key) row stays one, and a reminder that was
            // sent, or given up for any other reason, stays as it is.
            var existing = await db.OutboundMessages.AsNoTracking()
                .Where(m => m.Kind == OutboundMessageKinds.ExpiryReminder && keys.Contains(m.DedupeKey))
                .Select(m => new { m.DedupeKey, m.Id, DomainWasOff = m.SentAt == null && m.FailedAt != null && m.LastError!.StartsWith(DomainOffTheList) })
                .ToDictionaryAsync(m => m.DedupeKey, m => m.DomainWasOff ? m.Id : (long?)null, ct);
            // Whether the renewal page will give each its new key from the server (escrowed IDs): the reminder says so.
            var serials = batch.Select(d => d.Cert.SerialNumber).ToList();
            var escrowed = (await db.KeyEscrows.AsNoTracking().Where(e => serials.Contains(e.SerialNumber)).Select(e => e.SerialNumber).ToListAsync(ct))
                .ToHashSet(StringComparer.Ordinal);
            foreach (var (key, window, cert) in batch.Where(d => !existing.TryGetValue(d.Key, out var requeueable) || requeueable is not null))
            {
                // Renewed once already (its renewal revoked since: a valid one serves it, above), it renews no more: the renewal API
                // answers 409 "already renewed"; nor does one whose mailbox validation is too old to rely on (403, S/MIME BR 4.2.1). So
                // the reminder says to ask for an invitation, as with renewal switched off.
                var renewable = Renewable(renewal, cert.Renewed, cert.MailboxValidatedAt, now);
                var serverKey = renewable && Names.TryParseProfile(cert.Profile, out var profile) &&
                                Renewal.ServerKeyRenewal.RenewsWithServerKey(Escrow.KeyArchive.GenerationFor(policy!, profile), escrowed.Contains(cert.SerialNumber));
                var model = new MessageModel(cert.Email, cert.DisplayName, cert.Profile, cert.SerialNumber, NotAfter: cert.NotAfter, Days: DaysLeft(cert.NotAfter, now),
                    RenewalUrl: renewable ? Renewal.RenewalService.LinkFor(portal, cert.SerialNumber) : null, ServerKey: serverKey ? true : null);
                if (existing.GetValueOrDefault(key) is { } givenUp)
                {
                    // Conditional on the row being still so given up: of nodes (or passes) looking at once, one changes it; and a node
                    // not yet restarted with the domain back, giving it up again, leaves it to the next pass here, never sending it.
                    if (await queue.RequeueAsync(db, givenUp, OutboundMessageKinds.ExpiryReminder, model, options.OrganizationName, now, givenUpWith: DomainOffTheList, ct))
                    {
                        queued++;
                        logger.LogInformation("Reminder {Key} queued again: its mail domain is allowed again", key);
                    }
                    continue;
                }
                var message = queue.Enqueue(db, OutboundMessageKinds.ExpiryReminder, key, model, options.OrganizationName, now);
                try
                {
                    await db.SaveChangesAsync(ct);
                    queued++;
                }
                catch (DbUpdateException)
                {
                    // Another node queued the same reminder between our look and our insert: the unique key kept it single.
                    db.Entry(message).State = EntityState.Detached;
                    logger.LogDebug("Reminder {Key} was queued by another node", key);
                }
            }
        }
        return queued;
    }
}
