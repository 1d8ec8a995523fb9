using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Mail;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Gal;

public sealed record DirectoryEnrollmentRequest(bool DryRun = false);

/// <summary>A person a run invited (or, in a dry run, would invite), or could not.</summary>
public sealed record DirectoryEnrollmentPerson(string Email, string DisplayName, string Status, string? Error = null);

/// <param name="Withdrawn">Links the job had mailed to people the listing no longer finds, revoked (in a dry run: would be).</param>
/// <param name="ListingIncomplete">Why the directory's answer may have left people out (then no link was withdrawn); null when complete.</param>
public sealed record DirectoryEnrollmentReport(long RunId, bool DryRun, string Profile, int Found, int AlreadyEnrolled, int RecentlyInvited,
    int Invited, int Failed, int Deferred, IReadOnlyList<DirectoryEnrollmentPerson> People, int Withdrawn = 0, string? ListingIncomplete = null);

public sealed record DirectoryEnrollmentRunView(long Id, DateTimeOffset StartedAt, string StartedBy, bool DryRun, DateTimeOffset? FinishedAt,
    int Found, int AlreadyEnrolled, int RecentlyInvited, int Invited, int Failed, int Deferred, string? Error, int Withdrawn)
{
    public static DirectoryEnrollmentRunView From(DirectoryEnrollmentRun r) => new(r.Id, r.StartedAt, r.StartedBy, r.DryRun, r.FinishedAt,
        r.Found, r.AlreadyEnrolled, r.RecentlyInvited, r.Invited, r.Failed, r.Deferred, r.Error, r.Withdrawn);
}

/// <summary>Directory-driven enrollment: finds the people under the base DN (and in the group) who have a mailbox but
/// no valid certificate (nor one on hold) for the profile, and mails each an invitation (<see cref="Invitations"/>), at most
/// <see cref="DirectoryEnrollmentOptions.MaxInvitationsPerRun"/> per run. A person with a token for the profile made
/// within <see cref="DirectoryEnrollmentOptions.ReinviteAfter"/> (by this job or an administrator), or with one whose link still
/// works, or with a link of the job's that an administrator revoked (until an administrator invites them by hand), is left alone,
/// so each is invited once per period however often the job runs. A run also withdraws (revokes) the
/// links earlier runs mailed that still work, of people a complete listing no longer finds under any of their mailboxes: someone
/// who left must not get a certificate from the link in their old mail. A dry run reports the same lists and changes nothing.</summary>
public sealed class DirectoryEnrollment(
    CertPortalDbContext db, IServiceProvider services, DirectoryOptions directory, DirectoryEnrollmentOptions options, Invitations invitations,
    EnrollmentTokens tokens, CertPortalOptions portal, TimeProvider time, ILogger<DirectoryEnrollment> logger)
{
    public const string ScheduleActor = AuditActors.Schedule;
    /// <summary>Held by the node carrying out a run that invites (scheduled or asked for): two such runs at once would
    /// both find the same people not yet invited.</summary>
    internal const string RunLock = "directory-enrollment";
    private const int Chunk = 500;

    /// <summary>Set on a run whose node stopped before it finished (found by the next node to take the run lock).</summary>
    public const string AbandonedError = "The node running it stopped before it finished; the next run invites the rest.";
    /// <summary>Set by a node on its own run that stopped half-way; like every error, it makes the next scheduled run
    /// start at the next poll instead of a period later. Fixed texts: the exception itself (which may name hosts) is
    /// logged by whoever started the run.</summary>
    public const string ShutdownError = "Stopped before it finished: its node was shutting down; the next run invites the rest.";
    public const string LockLostError = "Stopped before it finished: its node lost the run lock (its database session ended), " +
                                        "so another node may be running; the next run invites the rest.";
    public const string DatabaseError = "Stopped before it finished by a database error (see the node's log); the next run invites the rest.";
    public const string UnexpectedError = "Stopped before it finished by an unexpected error (see the node's log); the next run invites the rest.";

    /// <summary>Starts a scheduled run if none finished within the interval; null when it is not this node's turn. The
    /// node that runs holds a cluster-wide lock for the whole run (a database session of its own), so every other node
    /// finds it taken and leaves the run alone. A node killed mid-run loses its session and with it the lock: the next
    /// node to look finds the run unfinished, marks it abandoned and starts another, which skips everyone the dead one
    /// invited (their tokens were committed one by one) and invites the rest. A run that stopped with an error (shutdown,
    /// lost lock, database or directory error) does not count for the period either: the next poll runs again.</summary>
    public async Task<DirectoryEnrollmentReport?> RunIfDueAsync(CancellationToken ct)
    {
        if (!options.Enabled || options.Interval is not { } interval) return null;
        await using var running = await db.TryHoldNamedAsync(RunLock, ct);
        if (running is null) return null;
        var now = time.GetUtcNow();
        await CloseAbandonedRunsAsync(now, ct);
        var since = now - interval;
        var recent = await db.DirectoryEnrollmentRuns.AsNoTracking()
            .Where(r => r.StartedBy == ScheduleActor && !r.DryRun && r.StartedAt > since)
            .OrderByDescending(r => r.Id).Select(r => new { r.StartedAt, r.Error }).Take(OutageBackoffLimit + 1).ToListAsync(ct);
        // Done for this period only when it finished without an error: after one that stopped half-way (its node stopped or
        // lost the lock, the database or the directory failed) the rest are invited now, not a period later.
        if (recent is [{ Error: null }, ..]) return null;
        // But a directory or database that stays down is not tried (and a run row written) every minute: after k failed runs
        // in a row the next waits 2^(k-1) - 1 minutes (0, 1, 3, 7, ... ), never more than the interval.
        var failedInARow = recent.TakeWhile(r => r.Error is { } e && !StoppedByItsNode(e)).Count();
        if (failedInARow > 0
            && now - recent[0].StartedAt < TimeSpan.FromMinutes(Math.Min((1 << Math.Min(failedInARow - 1, OutageBackoffLimit)) - 1, interval.TotalMinutes)))
            return null;
        var run = NewRun(ScheduleActor, dryRun: false, now);
        await db.SaveChangesAsync(ct);
        return await CarryOutAsync(run, running, ct);
    }

    private const int OutageBackoffLimit = 12;

    /// <summary>Errors of a run whose node stopped or lost its lock, as opposed to an outage of what the run needs.</summary>
    private static bool StoppedByItsNode(string error) => error is AbandonedError or ShutdownError or LockLostError;

    public async Task<Outcome<DirectoryEnrollmentReport>> RunAsync(DirectoryEnrollmentRequest request, string actor, CancellationToken ct)
    {
        if (!options.Enabled)
            return Failure.Unprocessable("Directory-driven enrollment is off.",
                $"Set {DirectoryEnrollmentOptions.SectionName}:Enabled (with the LDAP directory and mail configured) to invite people from the directory.");
        // A dry run changes nothing and may run beside anything; a real one waits for no one, it is refused.
        await using var running = request.DryRun ? null : await db.TryHoldNamedAsync(RunLock, ct);
        if (!request.DryRun && running is null)
            return Failure.Conflict("Another directory enrollment run is inviting people right now (scheduled, or started by an administrator); try again when it has finished.");
        if (running is not null) await CloseAbandonedRunsAsync(time.GetUtcNow(), ct);
        var run = NewRun(actor, request.DryRun, time.GetUtcNow());
        await db.SaveChangesAsync(ct);
        try
        {
            return await CarryOutAsync(run, running, ct);
        }
        catch (DirectoryException e)
        {
            return Failure.Unprocessable("The directory could not be searched.", e.Message);
        }
        catch (RunLockLostException e)
        {
            return Failure.Conflict(e.Message);
        }
    }

    /// <summary>Called holding the run lock: a run that invites and has not finished, while nobody holds the lock, was
    /// left by a node that stopped (crash, kill, restart) or lost the lock. It is closed as abandoned, so the console shows
    /// what happened and the scheduler runs again. Also the other half of the fence (<see cref="CountInvitationAsync"/>):
    /// every run that invites calls it before it reads who was invited, and once it has returned, an invitation of a closed
    /// run can no longer commit.</summary>
    private async Task CloseAbandonedRunsAsync(DateTimeOffset now, CancellationToken ct)
    {
        var abandoned = await db.DirectoryEnrollmentRuns.Where(r => !r.DryRun && r.FinishedAt == null)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.FinishedAt, now).SetProperty(r => r.Error, AbandonedError), ct);
        if (abandoned > 0)
            logger.LogWarning("Closed {Count} directory enrollment runs left unfinished by a node that stopped", abandoned);
    }

    /// <summary>The fence of a run that invites, in each invitation's transaction (on the group writer's context): counts the
    /// invitation in the run's row while the run is unfinished, and otherwise throws, which rolls the invitation back. The next
    /// node to take the run lock finishes every unfinished run (<see cref="CloseAbandonedRunsAsync"/>) before it reads who was
    /// invited, so on PostgreSQL the row's lock orders the two: either the close waits for this invitation's commit (and the
    /// next run then reads its token and skips the person), or this update waits for the close and finds the run finished.
    /// A duplicate invitation is thus impossible, not only unlikely as with the lock check alone, which a lock lost between
    /// check and commit passes. Chosen because it is one statement that means the same on both databases, on a row that
    /// exists already. The alternatives: a fencing number (a generation row each holder increments) is the same idea with
    /// a row of its own; checking pg_locks in the transaction is still a check before the commit (the lock can pass on
    /// between the two, and nothing makes the next holder wait for the commit); writing the invitation on the lock's
    /// connection would take it out of the group writer, and SQLite has no such connection. SQLite: the lock is this
    /// process's and writers take turns, so the fence never trips there and only counts. As the count commits with each
    /// invitation, a run stopped half-way (shutdown, a database error, a lost lock) records the invitations it made.</summary>
    /// <remarks>Also marks the token as the job's (<see cref="EnrollmentToken.DirectoryEnrollmentRunId"/>), in the same transaction,
    /// so a token is never the job's without its invitation nor the other way round.</remarks>
    private static async Task CountInvitationAsync(CertPortalDbContext w, long runId, Guid tokenId, CancellationToken ct)
    {
        var counted = await w.DirectoryEnrollmentRuns.Where(r => r.Id == runId && r.FinishedAt == null)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.Invited, r => r.Invited + 1), ct);
        if (counted == 0) throw new RunLockLostException();
        await w.EnrollmentTokens.Where(t => t.Id == tokenId).ExecuteUpdateAsync(s => s.SetProperty(t => t.DirectoryEnrollmentRunId, runId), ct);
    }

    /// <summary>The same fence for a withdrawal (in its revocation's transaction): a node that lost the lock read the directory
    /// before the next node's run, and must not withdraw a link that run may have mailed since to someone who came back.</summary>
    private static async Task CountWithdrawalAsync(CertPortalDbContext w, long runId, CancellationToken ct)
    {
        var counted = await w.DirectoryEnrollmentRuns.Where(r => r.Id == runId && r.FinishedAt == null)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.Withdrawn, r => r.Withdrawn + 1), ct);
        if (counted == 0) throw new RunLockLostException();
    }

    /// <summary>Recorded with each withdrawal (audit record's reason).</summary>
    public const string WithdrawnReason = "No longer found in the directory (or the group) by a directory enrollment run.";

    public async Task<IReadOnlyList<DirectoryEnrollmentRunView>> ListRunsAsync(CancellationToken ct) =>
        (await db.DirectoryEnrollmentRuns.AsNoTracking().OrderByDescending(r => r.Id).Take(50).ToListAsync(ct)).Select(DirectoryEnrollmentRunView.From).ToList();

    private DirectoryEnrollmentRun NewRun(string actor, bool dryRun, DateTimeOffset now)
    {
        var run = new DirectoryEnrollmentRun { StartedAt = now, StartedBy = actor, DryRun = dryRun };
        db.DirectoryEnrollmentRuns.Add(run);
        return run;
    }

    /// <summary>The links earlier runs mailed (only the job's: a token an administrator made by hand is theirs to revoke) that nobody
    /// has used, revoked or let expire, for mailboxes the listing did not find on any entry: their people left the directory or
    /// the group, and must not get a certificate from a link still in their old mail. Matched on every mail value of every entry
    /// found (a person invited under an address that is now an alias keeps the link; so does one whose mailbox the CA no longer
    /// issues for, whom the link's own check refuses). Only from a listing that is everyone: one the server cut short (size or
    /// time limit, OpenLDAP's size.prtotal on a paged search), or that left part of the tree to a referral, would take links
    /// from people who are still there, so it withdraws nothing; nor does a listing that found nobody at all, more likely a wrong
    /// BaseDn or GroupDn, or an access rule hiding the entries, than an organisation that left.</summary>
    private async Task<IReadOnlyList<JobLink>> LinksOfPeopleGoneAsync(DirectoryPeopleListing listing, long runId, DateTimeOffset now, CancellationToken ct)
    {
        if (listing.Incomplete is { } why)
        {
            logger.LogWarning("Directory enrollment run {Run}: the directory's listing may have left people out ({Reason}); no link is withdrawn", runId, why);
            return [];
        }
        if (listing.People.Count == 0)
        {
            logger.LogWarning("Directory enrollment run {Run}: the directory listed nobody; no link is withdrawn", runId);
            return [];
        }
        var present = listing.People.SelectMany(p => p.Mails)
            .Select(m => Mailbox.TryNormalize(m, out var e, out _) ? e : m.Trim()).ToHashSet(StringComparer.OrdinalIgnoreCase);
        // Few rows: the job's links that still work, at most MaxInvitationsPerRun per run within a link's lifetime.
        var live = await db.EnrollmentTokens.AsNoTracking()
            .Where(t => t.DirectoryEnrollmentRunId != null && t.UsedAt == null && t.RevokedAt == null && t.ExpiresAt > now)
            .Select(t => new JobLink(t.Id, t.Email, t.DisplayName)).ToListAsync(ct);
        return live.Where(t => !present.Contains(t.Email)).OrderBy(t => t.Email, StringComparer.Ordinal).ThenBy(t => t.Id).ToList();
    }

    /// <param name="running">The run lock, held by a run that invites; null for a dry run.</param>
    private async Task<DirectoryEnrollmentReport> CarryOutAsync(DirectoryEnrollmentRun run, HeldLock? running, CancellationToken ct)
    {
        if (!Names.TryParseProfile(options.Profile, out var profile))
            throw new InvalidOperationException("DirectoryEnrollment:Profile was validated at start"); // a bug if reached
        var profileName = Names.Of(profile);
        try
        {
            var baseDn = string.IsNullOrWhiteSpace(options.BaseDn) ? directory.PeopleBaseDn : options.BaseDn;
            // Resolved here, not injected: the LDAP client exists only with a directory configured, which Enabled guarantees
            // (checked at start), while the API and the console must be able to say "off" without one.
            var listing = await services.GetRequiredService<LdapDirectory>().ListPeopleWithMailAsync(baseDn, options.GroupDn, ct);
            var people = listing.People;
            // One person per mailbox in any case (LDAP finds mail so, and certificates and tokens are compared so: someone enrolled
            // as "alice@" whose entry says "Alice@" was invited again and again); entries whose mail the CA would refuse are reported.
            // Keyed by the mailbox an invitation would go to: the entry's first mail value the CA would issue for (mail is
            // multi-valued, and an entry whose first value was refused was reported as failed although an alias would do). The
            // value also holds every mailbox of the entry: someone enrolled or invited under an alias was invited again and
            // again for the first value. An entry with no mailbox the CA would issue for is reported with its first value.
            var candidates = new Dictionary<string, (string Name, IReadOnlyList<string> Mailboxes)>(StringComparer.OrdinalIgnoreCase);
            var report = new List<DirectoryEnrollmentPerson>();
            foreach (var (mails, name) in people)
            {
                var mailboxes = mails.Select(m => Mailbox.TryNormalize(m, out var e, out _) ? e : null).OfType<string>().ToList();
                if (mailboxes.FirstOrDefault(m => Mailbox.DomainAllowed(m, portal.AllowedDomains)) is { } email)
                    candidates.TryAdd(email, (name, mailboxes));
                else if (!Mailbox.TryNormalize(mails[0], out var first, out var error))
                    report.Add(new DirectoryEnrollmentPerson(Mailbox.Sanitize(mails[0]), name, "failed", error));
                else
                    report.Add(new DirectoryEnrollmentPerson(first, name, "failed", "The CA does not issue for this domain (CertPortal:AllowedDomains)."));
            }
            run.Found = people.Count;

            var now = time.GetUtcNow();
            var withdrawing = await LinksOfPeopleGoneAsync(listing, run.Id, now, ct);
            var since = now - options.ReinviteAfter;
            // What each mailbox holds: a person is enrolled when what they hold serves every use of the profile (a dual certificate
            // serves signing and encryption too; separate signing and encryption certificates together serve what a dual one does,
            // so a person who has both is not invited for a dual one beside them).
            var held = new Dictionary<string, List<CertificateProfileName>>(StringComparer.OrdinalIgnoreCase);
            var invitedLately = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            var looked = candidates.Values.SelectMany(p => p.Mailboxes).Distinct(StringComparer.OrdinalIgnoreCase);
            foreach (var batch in looked.Chunk(Chunk))
            {
                // lower("Email"), which the certificates' mailbox index covers (CertificateQueries.OfMailbox).
                var lowered = batch.Select(e => e.ToLowerInvariant()).ToList();
#pragma warning disable CA1862 // ToLower() becomes lower(); the StringComparison overloads do not translate
                // A certificate on hold counts as one: the hold suspends the person's ID until an administrator releases it
                // or revokes it for good, and a new certificate by invitation would undo the suspension (and, once released,
                // leave them two).
                foreach (var c in await db.Certificates.AsNoTracking()
                    .Where(c => lowered.Contains(c.Email.ToLower()) && c.NotBefore <= now && c.NotAfter > now
                                && (c.RevokedAt == null || c.RevocationReason == RevocationReason.CertificateHold))
                    .Select(c => new { c.Email, c.Profile }).ToListAsync(ct))
                    (held.TryGetValue(c.Email, out var list) ? list : held[c.Email] = []).Add(c.Profile);
                // Invited within the period, or holding a link that still works however old it is: a token may be made to last
                // longer than ReinviteAfter (up to Issuance:MaxTokenValidHours), and a second live link beside it is one more
                // secret in a mailbox and a message the person cannot tell from the first.
                invitedLately.UnionWith(await db.EnrollmentTokens.AsNoTracking()
                    .Where(t => lowered.Contains(t.Email.ToLower()) && t.Profile == profile && t.RevokedAt == null
                                && (t.CreatedAt > since || (t.UsedAt == null && t.ExpiresAt > now)))
                    .Select(t => t.Email).ToListAsync(ct));
                // A link the job mailed that an administrator revoked counts as one that still works, with no end: the administrator
                // decided against it, and that decision stands until an administrator changes it, as a certificate on hold (above)
                // holds the person back until an administrator releases or revokes it. Here the change is a token the administrator
                // makes by hand after the revocation; once that is used, revoked or expired, the usual rules apply again. A link the
                // job withdrew itself (its person had left) holds nobody back: they are invited again when they come back.
                var job = AuditActors.DirectoryEnrollment;
                invitedLately.UnionWith(await db.EnrollmentTokens.AsNoTracking()
                    .Where(t => lowered.Contains(t.Email.ToLower()) && t.Profile == profile && t.DirectoryEnrollmentRunId != null
                                && t.RevokedAt != null && (t.RevokedBy == null || t.RevokedBy != job)
                                && !db.EnrollmentTokens.Any(u => u.Email.ToLower() == t.Email.ToLower() && u.Profile == profile
                                                                 && u.DirectoryEnrollmentRunId == null && u.CreatedAt > t.RevokedAt))
                    .Select(t => t.Email).ToListAsync(ct));
#pragma warning restore CA1862
            }
            // A person is enrolled, or was invited lately, under any of the entry's mailboxes.
            bool Enrolled(string key) => CertificateProfile.ServedBy(profile,
                candidates[key].Mailboxes.SelectMany(m => held.GetValueOrDefault(m) ?? []).ToList());
            bool InvitedLately(string key) => candidates[key].Mailboxes.Any(invitedLately.Contains);
            run.AlreadyEnrolled = candidates.Keys.Count(Enrolled);
            run.RecentlyInvited = candidates.Keys.Count(e => !Enrolled(e) && InvitedLately(e));
            var due = candidates.Where(p => !Enrolled(p.Key) && !InvitedLately(p.Key)).OrderBy(p => p.Key, StringComparer.Ordinal)
                .Select(p => new KeyValuePair<string, string>(p.Key, p.Value.Name)).ToList();
            var inviting = due.Take(options.MaxInvitationsPerRun).ToList();
            run.Deferred = due.Count - inviting.Count;

            if (run.DryRun)
            {
                report.AddRange(withdrawing.Select(t => new DirectoryEnrollmentPerson(t.Email, t.DisplayName, "would-withdraw")));
                report.AddRange(inviting.Select(p => new DirectoryEnrollmentPerson(p.Key, p.Value, "would-invite")));
            }
            else
            {
                var actor = run.StartedBy == ScheduleActor ? AuditActors.DirectoryEnrollment : run.StartedBy;
                // Before each invitation, not each batch: a node whose lock session ended stops at the next invitation
                // instead of going on without the lock. The check cannot make a second invitation impossible (the lock
                // can pass on between it and the commit): the fence (CountInvitationAsync) does.
                var stillHeld = running ?? throw new InvalidOperationException("a run that invites holds the run lock"); // a bug if reached
                foreach (var link in withdrawing)
                {
                    ct.ThrowIfCancellationRequested();
                    if (!await stillHeld.IsStillHeldAsync(ct)) throw new RunLockLostException();
                    // The token revocation an administrator would make (same audit record), in the job's name whoever started
                    // the run: it is the job's rule, not a person's decision, and a revocation in the job's name is the one that
                    // does not hold the person back should they come back (see InvitedLately).
                    var revoked = await tokens.RevokeAsync(link.Id, AuditActors.DirectoryEnrollment, ct, WithdrawnReason,
                        (w, c) => CountWithdrawalAsync(w, run.Id, c));
                    // Spent or revoked since it was read: the link is gone either way, and nothing was counted.
                    if (revoked.Failure is null)
                        report.Add(new DirectoryEnrollmentPerson(link.Email, link.DisplayName, "withdrawn"));
                }
                foreach (var batch in inviting.Chunk(Invitations.MaxRows))
                {
                    var outcome = await invitations.InviteManyAsync(new BulkInvitationRequest(
                        batch.Select(p => (InvitationRow?)new InvitationRow(p.Key, p.Value, profileName, options.ValidHours)).ToList(), null, null), actor, ct,
                        beforeEach: async c =>
                        {
                            // The group writer finishes every write it is given, shutdown or not: without this check a run
                            // went on inviting until the host's shutdown timeout cut it off.
                            c.ThrowIfCancellationRequested();
                            if (!await stillHeld.IsStillHeldAsync(c)) throw new RunLockLostException();
                        },
                        withEach: (w, token, c) => CountInvitationAsync(w, run.Id, token, c));
                    if (outcome.Failure is { } f) throw new InvalidOperationException(f.Detail); // mail switched off: checked at start
                    report.AddRange(outcome.Value!.Results.Select(r => new DirectoryEnrollmentPerson(r.Email ?? "", batch[r.Row - 1].Value,
                        r.Status, r.Error)));
                }
            }
            var invited = report.Count(p => p.Status is "invited" or "would-invite");
            var withdrawn = report.Count(p => p.Status is "withdrawn" or "would-withdraw");
            // A run that invites has its invitations and withdrawals counted in its row as each commits (CountInvitationAsync,
            // CountWithdrawalAsync): saved from here, the numbers would overwrite those counts with what this node knows (the
            // same numbers when it got here).
            if (run.DryRun) (run.Invited, run.Withdrawn) = (invited, withdrawn);
            run.Failed = report.Count(p => p.Status == "failed");
            logger.LogInformation("Directory enrollment run {Run} ({Mode}): {Found} found, {Enrolled} enrolled, {Recent} invited lately, {Invited} invited, {Failed} failed, {Deferred} left for the next run, {Withdrawn} links withdrawn",
                run.Id, run.DryRun ? "dry run" : "for real", run.Found, run.AlreadyEnrolled, run.RecentlyInvited, invited, run.Failed, run.Deferred, withdrawn);
            return new DirectoryEnrollmentReport(run.Id, run.DryRun, profileName, run.Found, run.AlreadyEnrolled, run.RecentlyInvited,
                invited, run.Failed, run.Deferred, report, withdrawn, listing.Incomplete);
        }
        catch (Exception e)
        {
            // Recorded, never swallowed: the caller maps or logs the exception itself.
            run.Error = e switch
            {
                DirectoryException => e.Message.Length > 1000 ? e.Message[..1000] : e.Message,
                OperationCanceledException when ct.IsCancellationRequested => ShutdownError,
                RunLockLostException => LockLostError,
                _ when DatabaseErrors.IsDatabaseFailure(e) => DatabaseError,
                _ => UnexpectedError,
            };
            if (e is RunLockLostException)
                logger.LogWarning("Directory enrollment run {Run} stopped: this node lost the run lock (its database session ended)", run.Id);
            throw;
        }
        finally
        {
            run.FinishedAt = time.GetUtcNow();
            await db.SaveChangesAsync(CancellationToken.None);
        }
    }
}

/// <summary>A link a directory enrollment run mailed that still works (<see cref="DirectoryEnrollment"/>).</summary>
internal sealed record JobLink(Guid Id, string Email, string DisplayName);

/// <summary>The run lock's session ended while the run was inviting (<see cref="DatabaseLocks.TryHoldNamedAsync"/>).</summary>
internal sealed class RunLockLostException() : Exception(DirectoryEnrollment.LockLostError);

/// <summary>Starts the scheduled runs: every node looks once a minute, one of them runs when the interval is up.</summary>
public sealed class DirectoryEnrollmentWorker(IServiceScopeFactory scopes, DirectoryEnrollmentOptions options, ILogger<DirectoryEnrollmentWorker> logger)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Enabled || options.Interval is null) return;
        // The directory or database may be down: the run is recorded with its error and tried again at the next poll.
        await PollTimer.RunAsync(TimeSpan.FromMinutes(1), async ct =>
        {
            await using var scope = scopes.CreateAsyncScope();
            await scope.ServiceProvider.GetRequiredService<DirectoryEnrollment>().RunIfDueAsync(ct);
        }, logger, "Directory enrollment", stoppingToken);
    }
}
