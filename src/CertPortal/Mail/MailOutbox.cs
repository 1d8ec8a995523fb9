using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using CertPortal.Cluster;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;
using MimeKit;

namespace CertPortal.Mail;

/// <summary>Queues messages in the caller's transaction; the enrollment link of an invitation is sealed
/// (AES-GCM under the key derived from <c>Ca:KeyPassphrase</c>, bound to this message's kind, key and recipient),
/// so the database never holds a usable link.</summary>
public sealed class MailQueue(KeyEncryptionSecret kek)
{
    public OutboundMessage Enqueue(CertPortalDbContext db, string kind, string dedupeKey, MessageModel model, string organization,
        DateTimeOffset now, string? link = null)
    {
        var message = new OutboundMessage
        {
            Kind = kind, DedupeKey = dedupeKey, Recipient = model.Email, Subject = Truncate(MailTemplates.Subject(kind, model, organization), 256),
            Model = model.ToJson(), CreatedAt = now, NextAttemptAt = now,
        };
        if (link is not null) message.SealedLink = kek.Seal(Encoding.UTF8.GetBytes(link), LinkPurpose(message));
        db.OutboundMessages.Add(message);
        return message;
    }

    /// <summary>Queues again, in its own row (the (kind, key) stays one), a message that was given up unsent with an error beginning
    /// <paramref name="givenUpWith"/>, saying what it says now. One statement, conditional on the row being still so: of several nodes
    /// doing it at once one changes it, and a message sent, queued again already, or given up for another reason is left as it is.
    /// Only for a message without a sealed link (one given up has none left).</summary>
    /// <returns>Whether this call queued it.</returns>
    public async Task<bool> RequeueAsync(CertPortalDbContext db, long id, string kind, MessageModel model, string organization, DateTimeOffset now,
        string givenUpWith, CancellationToken ct)
    {
        var subject = Truncate(MailTemplates.Subject(kind, model, organization), 256);
        var json = model.ToJson();
        return await db.OutboundMessages
            .Where(m => m.Id == id && m.Kind == kind && m.SentAt == null && m.FailedAt != null && m.LastError!.StartsWith(givenUpWith))
            .ExecuteUpdateAsync(s => s
                .SetProperty(m => m.FailedAt, (DateTimeOffset?)null)
                .SetProperty(m => m.LastError, (string?)null)
                .SetProperty(m => m.NextAttemptAt, now)
                .SetProperty(m => m.Subject, subject)
                .SetProperty(m => m.Model, json), ct) == 1;
    }

    /// <exception cref="CryptographicException">Altered, moved to another row, or sealed under another passphrase.</exception>
    public string OpenLink(OutboundMessage message) => Encoding.UTF8.GetString(kek.Open(message.SealedLink!, LinkPurpose(message)));

    /// <summary>Derives the sealing key now (PBKDF2, slow on purpose) rather than inside the first invitation's commit.</summary>
    public void Warm() => kek.Seal([], "mail-link:warm-up");

    private static string LinkPurpose(OutboundMessage m) => $"mail-link:{m.Kind}:{m.DedupeKey}:{m.Recipient}";

    private static string Truncate(string s, int max) => s.Length <= max ? s : s[..max];
}

/// <summary>Sends the mail outbox. Safe with any number of nodes: a node claims one message at a time with a
/// conditional update (it must still be unsent and unleased) and holds it for <see cref="MailOptions.Lease"/>;
/// a node that dies mid-send leaves the message to another once the lease runs out, and a send that would outlast
/// the lease (a server answering each command just within the timeout) is given up before it ends, never while
/// another node may be sending the same message. Leases are timed on the database's clock (<see cref="LeaseClock"/>), so a
/// node whose own clock is off cannot shorten another's or take a message another still holds. An SMTP server that is
/// down delays messages (retries with exponential backoff) and never fails or slows the API call that queued
/// them. A security or policy refusal at RCPT (5.7.x, "Relay access denied") may refuse this service (every message) or only
/// one recipient: the message is failed only once the server, in the same session, takes the next recipient after refusing it;
/// otherwise it is kept and retried as in an outage, so a relay refusing us never costs a message. Each node judges from its
/// own sessions, as relays allow relaying per client address or login. Each pass first queues the expiry reminders that have
/// come due.</summary>
public sealed class MailOutbox(IServiceScopeFactory scopes, MailQueue queue, MailOptions options, CertPortalOptions portal, Renewal.RenewalOptions renewal, TimeProvider time,
    ILogger<MailOutbox> logger) : BackgroundService
{
    public const string MeterName = "CertPortal.Mail";
    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> Outcomes = Meter.CreateCounter<long>("certportal.mail.messages",
        description: "Outbound messages handled, by outcome (sent, retried, failed).");
    private const int BatchSize = 100;
    // Sent and failed rows stay as long as a certificate can live, so a reminder's dedupe key outlives the
    // certificate it is about (S/MIME BR: at most 825 days).
    private static readonly TimeSpan Retention = TimeSpan.FromDays(825);

    // Two refusals of the kind that may refuse this service (SmtpRefusal.OrRefusesService) running, with no recipient taken
    // between them, are this service refused: the pass stops there as for an outage, so that a relay refusing us is asked
    // about two messages a pass, not every queued one (some relays block a client that keeps asking them to relay).
    private const int RefusalsThatAreAnOutage = 2;

    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    /// <summary>Messages this node kept after such a refusal that nothing in its session told apart (the message was the last
    /// one sent, or the next was refused too): each is tried again, before its backoff ends, in front of a due message of a
    /// later pass, whose answer then tells. In memory: a node that restarts forgets them, and they wait out their backoff.</summary>
    private readonly ConcurrentDictionary<long, bool> _awaitingAnotherRecipient = new();

    /// <summary>Identifies this node's leases (several instances may share a host, or a process in tests).</summary>
    public string NodeId { get; } = $"{Truncate(Environment.MachineName, 32)}/{Environment.ProcessId}/{Guid.NewGuid().ToString("N")[..8]}";

    public sealed record PassResult(int Queued, int Sent, int Retried, int Failed);

    /// <summary>Asks for a pass now (after a commit that queued messages), instead of at the next poll.</summary>
    public void Wake() => _wake.Writer.TryWrite(true);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Enabled) return;
        await Task.Yield(); // off the start-up path: the key derivation below takes a moment
        queue.Warm();
        logger.LogInformation("Sending mail through {Host}:{Port} ({Security}) as {From}", options.Host, options.EffectivePort, options.Security, options.From);
        using var timer = PollTimer.Create(options.PollInterval);
        Task<bool>? tick = null, wake = null;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await RunOnceAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                // Stopped in a pass: ends quietly, as PollTimer.RunAsync explains. A message it had claimed stays leased until the
                // lease ends, as a node that died would leave it (a send cut off after its final dot may have been taken).
                return;
            }
            catch (Exception e) when (PollTimer.FailedPass(e, stoppingToken))
            {
                // A database hiccup must not stop mail for good; the next tick tries again.
                logger.LogError(e, "Mail outbox pass failed");
            }
            // Either the poll interval or a wake-up, whichever comes first; the other stays pending for the next round.
            tick ??= timer.WaitForNextTickAsync(stoppingToken).AsTask();
            wake ??= _wake.Reader.WaitToReadAsync(stoppingToken).AsTask();
            try
            {
                var first = await Task.WhenAny(tick, wake);
                if (!await first) return;
                if (first == tick) tick = null;
                else { wake = null; _wake.Reader.TryRead(out _); }
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>One pass: queue due reminders, then send every due message. Public so tests (and an operator's
    /// "send now") can drive it directly.</summary>
    public async Task<PassResult> RunOnceAsync(CancellationToken ct)
    {
        if (!options.Enabled) return new PassResult(0, 0, 0, 0);
        var queued = await QueueRemindersAsync(ct);
        int sent = 0, retried = 0, failed = 0;
        await using var scope = scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var now = time.GetUtcNow();
        await db.OutboundMessages.Where(m => (m.SentAt != null && m.SentAt < now - Retention) || (m.FailedAt != null && m.FailedAt < now - Retention))
            .ExecuteDeleteAsync(ct);
        var leaseNow = (await db.ReadLeaseClockAsync(time, ct)).Shared;
        var due = await DueMessages(db, now, leaseNow).OrderBy(m => m.NextAttemptAt).ThenBy(m => m.Id).Select(m => m.Id).Take(BatchSize).ToListAsync(ct);
        if (due.Count == 0) return new PassResult(queued, 0, 0, 0);

        SmtpSender? smtp = null;
        // Refused at RCPT in a way that may refuse this service or only the recipient, and not yet told apart (see SmtpRefusal).
        var undecided = new List<(OutboundMessage Message, SmtpRefusal Refusal)>();
        try
        {
            foreach (var (id, early) in InFrontOfDue(due))
            {
                _awaitingAnotherRecipient.TryRemove(id, out _);
                var claim = await ClaimAsync(db, id, early, ct);
                if (claim is null) continue; // another node has it, or sent it meanwhile
                var (message, sendBy) = claim.Value;
                var check = await CheckBeforeSendingAsync(db, message, ct);
                if (check.Postponed is { } waiting)
                {
                    await PostponeAsync(db, message, waiting, ct);
                    continue;
                }
                if (check.Refusal is { } pointless)
                {
                    // What kept it waiting (an outage, a relay refusing this service) stays readable beside why it is given up.
                    await FinishAsync(db, message, failedBecause: message.LastError is null ? pointless : $"{pointless} Last SMTP error: {message.LastError}", ct);
                    failed++;
                    continue;
                }
                MimeMessage mime;
                try
                {
                    mime = Compose(message, message.SealedLink is null ? null : queue.OpenLink(message), check.WithoutRenewalLink);
                }
                catch (CryptographicException)
                {
                    await FinishAsync(db, message, failedBecause: "The sealed enrollment link cannot be opened (Ca:KeyPassphrase changed?).", ct);
                    failed++;
                    continue;
                }
                try
                {
                    if (smtp is null)
                    {
                        smtp = new SmtpSender(options, time);
                        await smtp.ConnectAsync(sendBy, ct);
                    }
                    var refused = await smtp.SendAsync(mime, sendBy, ct);
                    if (refused?.OrRefusesService is not null)
                    {
                        undecided.Add((message, refused));
                        if (undecided.Count < RefusalsThatAreAnOutage) continue; // the next recipient's answer tells
                        retried += await RetryUndecidedAsync(db, undecided, ct);
                        break;
                    }
                    // The server took this recipient (sent, or refused only its content) in the same session, after refusing
                    // the undecided ones: it serves us, and refused those recipients themselves.
                    if (refused is not { AtRecipient: true }) failed += await FailUndecidedAsync(db, undecided, ct);
                    await FinishAsync(db, message, failedBecause: refused?.Reply, ct, subject: mime.Subject);
                    if (refused is null) sent++; else failed++;
                }
                catch (SmtpUnavailableException e)
                {
                    // Down, refusing for now, or refusing this service until its configuration is fixed: every other message
                    // would fail the same way; all wait for the next try.
                    await RetryLaterAsync(db, message, e, ct);
                    retried++;
                    break;
                }
            }
            // Nothing after them told: kept, as in an outage (a message is never given up on a refusal that may be the service's).
            retried += await RetryUndecidedAsync(db, undecided, ct);
        }
        finally
        {
            if (smtp is not null) await smtp.DisposeAsync();
        }
        Outcomes.Add(sent, new KeyValuePair<string, object?>("outcome", "sent"));
        Outcomes.Add(retried, new KeyValuePair<string, object?>("outcome", "retried"));
        Outcomes.Add(failed, new KeyValuePair<string, object?>("outcome", "failed"));
        logger.LogInformation("Mail outbox pass: {Sent} sent, {Retried} to retry, {Failed} failed, {Queued} reminders queued", sent, retried, failed, queued);
        return new PassResult(queued, sent, retried, failed);
    }

    /// <param name="now">This node's time, which retries are scheduled on.</param>
    /// <param name="leaseNow">The lease clock's (<see cref="LeaseClock"/>: the database's with several nodes).</param>
    private static IQueryable<OutboundMessage> DueMessages(CertPortalDbContext db, DateTimeOffset now, DateTimeOffset leaseNow) =>
        UnsentAndFree(db, leaseNow).Where(m => m.NextAttemptAt <= now);

    /// <param name="leaseNow">The lease clock's (<see cref="LeaseClock"/>: the database's with several nodes).</param>
    private static IQueryable<OutboundMessage> UnsentAndFree(CertPortalDbContext db, DateTimeOffset leaseNow) =>
        db.OutboundMessages.Where(m => m.SentAt == null && m.FailedAt == null && (m.LeaseExpiresAt == null || m.LeaseExpiresAt <= leaseNow));

    /// <summary>The due messages, each preceded by one that awaits another recipient's answer (<see cref="_awaitingAnotherRecipient"/>),
    /// while there are such: that due message's answer then tells whether the relay refused the one before it or this service.</summary>
    private IEnumerable<(long Id, bool Early)> InFrontOfDue(IReadOnlyList<long> due)
    {
        var awaiting = _awaitingAnotherRecipient.Keys.Except(due).Order().Take(due.Count).ToList();
        for (var i = 0; i < due.Count; i++)
        {
            if (i < awaiting.Count) yield return (awaiting[i], true);
            yield return (due[i], false);
        }
    }

    /// <summary>Takes one message for this node: a conditional update that only one node's can change. The lease is written on
    /// the lease clock (the database's with several nodes), so a node whose own clock is off cannot shorten it for the others.</summary>
    /// <param name="early">Before its backoff ends (one that awaits another recipient's answer).</param>
    /// <returns>The message, and when its send must be given up on this node's clock: <see cref="MailOptions.LeaseMargin"/> before
    /// the lease ends as this node measures it (see <see cref="LeaseTime.Own"/>).</returns>
    private async Task<(OutboundMessage Message, DateTimeOffset SendBy)?> ClaimAsync(CertPortalDbContext db, long id, bool early, CancellationToken ct)
    {
        var clock = await db.ReadLeaseClockAsync(time, ct);
        var until = clock.Shared + options.Lease;
        var claimed = await (early ? UnsentAndFree(db, clock.Shared) : DueMessages(db, clock.Own, clock.Shared)).Where(m => m.Id == id)
            .ExecuteUpdateAsync(s => s.SetProperty(m => m.LeasedBy, NodeId).SetProperty(m => m.LeaseExpiresAt, until), ct);
        if (claimed == 0) return null;
        var message = await db.OutboundMessages.AsNoTracking().FirstAsync(m => m.Id == id, ct);
        return (message, clock.Own + options.Lease - options.LeaseMargin);
    }

    /// <summary>The server took another recipient in this session after refusing these: it refused these recipients, not
    /// this service. Each node judges from its own session only: relays commonly allow relaying per client address or
    /// login, so what one node sees accepted says nothing about another's refusals.</summary>
    private async Task<int> FailUndecidedAsync(CertPortalDbContext db, List<(OutboundMessage Message, SmtpRefusal Refusal)> undecided, CancellationToken ct)
    {
        foreach (var (message, refusal) in undecided)
            await FinishAsync(db, message, failedBecause: $"{refusal.Reply} (refused for this recipient: the server took the next recipient in the same session)", ct);
        var count = undecided.Count;
        undecided.Clear();
        return count;
    }

    /// <summary>Nothing told these refusals apart, or the next recipient was refused too: kept as in an outage, and tried again
    /// in front of a later pass's due message (<see cref="_awaitingAnotherRecipient"/>).</summary>
    private async Task<int> RetryUndecidedAsync(CertPortalDbContext db, List<(OutboundMessage Message, SmtpRefusal Refusal)> undecided, CancellationToken ct)
    {
        foreach (var (message, refusal) in undecided)
        {
            await RetryLaterAsync(db, message, refusal.OrRefusesService!, ct);
            // Bounded: in a long outage every queued message is here, and a pass takes one per due message anyway.
            if (_awaitingAnotherRecipient.Count < BatchSize) _awaitingAnotherRecipient.TryAdd(message.Id, true);
        }
        var count = undecided.Count;
        undecided.Clear();
        return count;
    }

    /// <summary>What the check before sending decided: sent (both null), given up (<see cref="Refusal"/>, why) or kept for later
    /// (<see cref="Postponed"/>, why); a reminder of a certificate that can no longer renew itself goes without its renewal link
    /// (<see cref="WithoutRenewalLink"/>).</summary>
    private readonly record struct SendCheck(string? Refusal = null, string? Postponed = null, bool WithoutRenewalLink = false);

    /// <summary>A message that lost its point while it waited (SMTP down, backoff) is not sent. An invitation whose token was
    /// used, revoked or expired: its link would only lead to an error page. An expiry reminder whose certificate was revoked,
    /// renewed (its renewal still valid) or has expired: it would tell the person to renew a digital ID that is gone or replaced; or whose mail domain was
    /// taken off <c>AllowedDomains</c>: nothing would renew it. A reminder whose certificate is on hold waits for the release.</summary>
    private async Task<SendCheck> CheckBeforeSendingAsync(CertPortalDbContext db, OutboundMessage message, CancellationToken ct)
    {
        if (message.Kind == OutboundMessageKinds.ExpiryReminder) return await CheckReminderAsync(db, message, ct);
        if (message.Kind != OutboundMessageKinds.Invitation || !Guid.TryParse(message.DedupeKey, out var tokenId)) return default;
        var token = await db.EnrollmentTokens.AsNoTracking().FirstOrDefaultAsync(t => t.Id == tokenId, ct);
        var status = token?.StatusAt(time.GetUtcNow());
        return status is null or TokenStatus.Pending ? default
            : new SendCheck(Refusal: $"Not sent: the token was {status.ToString()!.ToLowerInvariant()} before the invitation could be sent.");
    }

    /// <summary>A reminder's key is "{serial}:{days}" (<see cref="ExpiryReminders"/>). One that waited (SMTP down) until a later
    /// reminder's day had come gives way to that one: sent beside it, it would say "30 days" a week before the expiry.
    /// <para>One whose certificate is on hold is kept, not given up: the day's key is taken by it, so were it failed, the release would
    /// queue none and the holder would never be reminded. Released, it is sent (saying the days left then, or giving way to the next
    /// reminder's as above); revoked for good or expired, it is given up. So is one whose renewal is on hold, until the renewal is
    /// released (then the reminder is not needed) or revoked for good (then it is sent, without the renewal link).</para></summary>
    private async Task<SendCheck> CheckReminderAsync(CertPortalDbContext db, OutboundMessage message, CancellationToken ct)
    {
        var parts = message.DedupeKey.Split(':');
        var serial = parts[0];
        var certificate = await db.Certificates.AsNoTracking().Where(c => c.SerialNumber == serial)
            .Select(c => new { c.RevokedAt, c.RevocationReason, c.NotAfter, c.RenewedBy, c.Email, c.Profile, c.MailboxValidatedAt }).FirstOrDefaultAsync(ct);
        if (certificate is null) return default;
        var now = time.GetUtcNow();
        if (ExpiryReminders.PostponedBecause(certificate.RevokedAt, certificate.RevocationReason, certificate.NotAfter, now) is { } waits)
            return new SendCheck(Postponed: waits);
        var held = certificate.RevokedAt is not null && certificate.RevocationReason == Authority.RevocationReason.CertificateHold;
        var why = certificate.RevokedAt is not null && !held ? "revoked" : certificate.NotAfter <= now ? "expired" : null;
        if (why is not null) return Refused($"Not sent: the certificate was {why} before the reminder could be sent.");
        // Its domain taken off AllowedDomains while it waited: its renewal would be refused, as ExpiryReminders decides at queueing.
        if (!Mailbox.DomainAllowed(certificate.Email, portal.AllowedDomains))
            return Refused(ExpiryReminders.DomainNotAllowed(certificate.Email));
        // Replaced otherwise while it waited (a new ID from an invitation, not a renewal): as ExpiryReminders decides at queueing (CertificateProfile.ServedBy).
        var mailbox = certificate.Email.ToLowerInvariant();
#pragma warning disable CA1862 // EF Core translates ToLower() to lower() (the index on lower("Email")), not string.Equals(..., OrdinalIgnoreCase)
        var newer = await db.Certificates.AsNoTracking()
            .Where(c => c.Email.ToLower() == mailbox && c.RevokedAt == null && c.NotAfter > certificate.NotAfter && c.NotBefore <= now)
            .Select(c => new { c.SerialNumber, c.Profile }).ToListAsync(ct);
#pragma warning restore CA1862
        // Its renewal counts as any newer ID does, while it is valid: a renewal revoked since (not as superseded by a renewal of its
        // own, which would be here) leaves this certificate's holder with nothing else, and they are reminded of it.
        if (Authority.CertificateProfile.ServedBy(certificate.Profile, newer.Select(c => c.Profile).ToList()))
            return Refused(newer.Any(c => c.SerialNumber == certificate.RenewedBy)
                ? "Not sent: the certificate was renewed before the reminder could be sent."
                : "Not sent: its holder was given a newer digital ID that serves its uses before the reminder could be sent.");
        // Its renewal on hold (not valid, so not among the newer IDs above): kept, as a reminder of a held certificate is. Sent now, it
        // would tell a holder who has renewed to ask for an invitation (a renewed certificate renews no more). Released, the renewal
        // serves it and the reminder is not sent (above); revoked for good, the reminder goes as for any revoked renewal (below).
        if (certificate.RenewedBy is { } successor && await db.Certificates.AsNoTracking().OnHoldAt(now).AnyAsync(c => c.SerialNumber == successor, ct))
            return new SendCheck(Postponed: ExpiryReminders.RenewalOnHold);
        if (parts.Length > 1 && int.TryParse(parts[1], System.Globalization.CultureInfo.InvariantCulture, out var days) &&
            options.ReminderDays.Where(d => d < days).DefaultIfEmpty(0).Max() is var next and > 0 && certificate.NotAfter - now <= TimeSpan.FromDays(next))
            return Refused($"Not sent: its certificate expires within {next} days, which the {next}-day reminder says.");
        // Renewed once already, it renews no more (the renewal API answers 409 "already renewed"), nor once its mailbox validation is
        // too old (it may have aged while the reminder waited): the reminder says to ask for an invitation, as with renewal switched off.
        return new SendCheck(WithoutRenewalLink: !ExpiryReminders.Renewable(renewal, certificate.RenewedBy is not null, certificate.MailboxValidatedAt, now));

        static SendCheck Refused(string why) => new(Refusal: why);
    }

    /// <summary>Kept for later, without counting an attempt (the wait is the certificate's, not the SMTP server's) and with the SMTP
    /// error, if any, left as it was: looked at again after <see cref="MailOptions.RetryMaxDelay"/>, so a certificate released from hold
    /// gets its reminder within that.</summary>
    private async Task PostponeAsync(CertPortalDbContext db, OutboundMessage message, string why, CancellationToken ct)
    {
        var next = time.GetUtcNow() + options.RetryMaxDelay;
        await db.OutboundMessages.Where(m => m.Id == message.Id && m.LeasedBy == NodeId)
            .ExecuteUpdateAsync(s => s
                .SetProperty(m => m.NextAttemptAt, next)
                .SetProperty(m => m.LeasedBy, (string?)null)
                .SetProperty(m => m.LeaseExpiresAt, (DateTimeOffset?)null), CancellationToken.None);
        logger.LogInformation("{Kind} message {Id} to {Recipient} kept until {Next}: {Why}", message.Kind, message.Id, message.Recipient, next, why);
    }

    /// <summary>Sent, or refused for good: either way the sealed link is erased and the lease given up.</summary>
    /// <param name="subject">The subject the server was given, which the outbox listing then shows: a reminder's states the days left
    /// when it was sent, not when it was queued.</param>
    private async Task FinishAsync(CertPortalDbContext db, OutboundMessage message, string? failedBecause, CancellationToken ct, string? subject = null)
    {
        var now = time.GetUtcNow();
        var listed = subject is null ? null : Truncate(subject, 256);
        var changed = await db.OutboundMessages.Where(m => m.Id == message.Id && m.LeasedBy == NodeId)
            .ExecuteUpdateAsync(s => s
                .SetProperty(m => m.SentAt, failedBecause == null ? now : null)
                .SetProperty(m => m.FailedAt, failedBecause == null ? null : now)
                .SetProperty(m => m.LastError, failedBecause == null ? null : Truncate(failedBecause, 1000))
                .SetProperty(m => m.Subject, m => listed ?? m.Subject)
                .SetProperty(m => m.Attempts, m => m.Attempts + 1)
                .SetProperty(m => m.SealedLink, (byte[]?)null)
                .SetProperty(m => m.LeasedBy, (string?)null)
                .SetProperty(m => m.LeaseExpiresAt, (DateTimeOffset?)null), CancellationToken.None);
        if (changed == 0)
            logger.LogWarning("Mail message {Id} was taken over by another node while this one sent it (lease {Lease} too short?)", message.Id, options.Lease);
        else if (failedBecause is null)
            logger.LogInformation("Sent {Kind} message {Id} to {Recipient}", message.Kind, message.Id, message.Recipient);
        else
            logger.LogWarning("{Kind} message {Id} to {Recipient} failed for good: {Error}", message.Kind, message.Id, message.Recipient, failedBecause);
    }

    private async Task RetryLaterAsync(CertPortalDbContext db, OutboundMessage message, SmtpUnavailableException error, CancellationToken ct)
    {
        var attempts = message.Attempts + 1;
        var delay = TimeSpan.FromTicks(Math.Min(options.RetryMaxDelay.Ticks, options.RetryBaseDelay.Ticks * (1L << Math.Min(attempts - 1, 20))));
        var next = time.GetUtcNow() + delay;
        var lastError = Truncate(error.Message, 1000);
        await db.OutboundMessages.Where(m => m.Id == message.Id && m.LeasedBy == NodeId)
            .ExecuteUpdateAsync(s => s
                .SetProperty(m => m.Attempts, attempts)
                .SetProperty(m => m.LastError, lastError)
                .SetProperty(m => m.NextAttemptAt, next)
                .SetProperty(m => m.LeasedBy, (string?)null)
                .SetProperty(m => m.LeaseExpiresAt, (DateTimeOffset?)null), CancellationToken.None);
        if (error.RefusesService)
            logger.LogError("Mail message {Id} not sent: the SMTP server refuses this service, a configuration problem; kept, attempt {Attempts}, " +
                "next in {Delay}: {Error}", message.Id, attempts, delay, lastError);
        else
            logger.LogWarning("Mail message {Id} not sent, attempt {Attempts}, next in {Delay}: {Error}", message.Id, attempts, delay, lastError);
    }

    private MimeMessage Compose(OutboundMessage message, string? link, bool withoutRenewalLink)
    {
        var model = MessageModel.FromJson(message.Model);
        if (withoutRenewalLink) model = model with { RenewalUrl = null, ServerKey = null };
        // One whose next reminder's day has come is not sent at all (CheckReminderAsync).
        var reminder = message.Kind == OutboundMessageKinds.ExpiryReminder;
        var now = time.GetUtcNow();
        if (reminder) model = ExpiryReminders.AsSentAt(model, now);
        var rendered = MailTemplates.Render(message.Kind, model, link, options.OrganizationName);
        var mime = new MimeMessage();
        mime.From.Add(new MailboxAddress(options.OrganizationName, options.From));
        mime.To.Add(new MailboxAddress(model.DisplayName, message.Recipient));
        mime.Subject = rendered.Subject;
        // The same Message-ID on every attempt: if a node dies after the server took a message but before it
        // recorded that, the copy sent by the next node is recognisably the same message.
        mime.MessageId = $"certportal.{message.Kind}.{message.Id}@{Mailbox.Domain(options.From)}";
        // A reminder is written now (its days left count from now), so it is dated now: dated when it was queued (weeks back after a
        // hold, or queued again once its domain was allowed again), mail clients sorted it among that time's mail, and its "in N days"
        // read from that date named the wrong day. Other messages keep the date they were queued with (their words do not change).
        mime.Date = reminder ? now : message.CreatedAt;
        // RFC 3834: no out-of-office replies to machine-sent mail.
        mime.Headers.Add("Auto-Submitted", "auto-generated");
        mime.Body = new BodyBuilder { TextBody = rendered.Text, HtmlBody = rendered.Html }.ToMessageBody();
        return mime;
    }

    /// <summary>Queues the expiry reminders that have come due (see <see cref="ExpiryReminders"/>).</summary>
    private async Task<int> QueueRemindersAsync(CancellationToken ct)
    {
        if (options.ReminderDays.Count == 0) return 0;
        await using var scope = scopes.CreateAsyncScope();
        var reminders = scope.ServiceProvider.GetRequiredService<ExpiryReminders>();
        return await reminders.QueueDueAsync(ct);
    }

    private static string Truncate(string s, int max) => s.Length <= max ? s : s[..max];
}
