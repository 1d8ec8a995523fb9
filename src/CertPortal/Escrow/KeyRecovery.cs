using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Enrollment;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Escrow;

/// <summary>M-of-N recovery of an escrowed key: an administrator opens a request, agents approve it with
/// their decrypted shares, and the key is exported once or re-escrowed. The server holds a recovered key
/// only for the request that completes the recovery, and submitted shares only sealed under a key kept
/// outside the database, until the request completes or expires. Agents submit their shares sealed to the request
/// (<see cref="SealedShare"/>), so a submission seen once approves no other request.</summary>
public sealed class KeyRecovery(CertPortalDbContext db, KeyArchive archive, CertPortalOptions options, TimeProvider time,
    RecoverySessionKey sessionKey, CaHierarchy ca, ILogger<KeyRecovery> logger)
{
    public async Task<Outcome<RecoveryView>> OpenAsync(OpenRecoveryRequest request, string actor, CancellationToken ct)
    {
        var serial = (request.SerialNumber ?? "").Trim().ToUpperInvariant();
        if (!RecoveryPurposeNames.TryParse((request.Purpose ?? RecoveryPurposeNames.Recover).Trim().ToLowerInvariant(), out var purpose))
            return Failure.Unprocessable("Invalid purpose.", "purpose must be recover (default) or re-escrow.");
        var reason = (request.Reason ?? "").Trim();
        if (reason.Length is 0 or > 256 || reason.Any(char.IsControl))
            return Failure.Unprocessable("Invalid reason.", "reason is required (at most 256 printable characters): it goes into the audit log.");
        var notFound = Failure.NotFound($"No escrowed key for certificate '{Mailbox.Sanitize(serial)}'.");
        if (await LiveEscrowIdAsync(serial, ct) is not { } escrowId) return notFound;
        await PurgeExpiredSharesAsync(ct);
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        // A re-escrow committing meanwhile supersedes the escrow read above and cancels the requests it finds on it, but not
        // one inserted after it looked: that one would sit on an escrow without shares, never approvable and never cancelled.
        // So the escrow is read again under the lock its re-escrow holds until it commits (CompleteAsync): either the re-escrow
        // comes first and this request goes to its successor, or this one commits first and the re-escrow cancels it. SQLite's
        // write transaction already keeps the re-escrow out, and the loop ends at once.
        while (true)
        {
            await db.LockNamedAsync($"recovery-escrow:{escrowId}", ct);
            var live = await LiveEscrowIdAsync(serial, ct);
            if (live is null) return notFound;
            if (live == escrowId) break;
            escrowId = live.Value;
        }
        var now = time.GetUtcNow();
        var r = new RecoveryRequest
        {
            Id = Guid.CreateVersion7(now), EscrowId = escrowId, SerialNumber = serial, Purpose = purpose, Reason = reason,
            RequestedBy = actor, CreatedAt = now, ExpiresAt = now + options.Escrow.RecoveryRequestLifetime,
        };
        db.RecoveryRequests.Add(r);
        AuditLog.Record(db, now, actor, AuditActions.RecoveryRequested, $"recovery:{r.Id}", new { serial, purpose = RecoveryPurposeNames.Of(purpose), reason });
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        return await ViewAsync(r.Id, ct);
    }

    private Task<Guid?> LiveEscrowIdAsync(string serial, CancellationToken ct) =>
        db.KeyEscrows.Where(e => e.SerialNumber == serial && e.SupersededAt == null).Select(e => (Guid?)e.Id).FirstOrDefaultAsync(ct);

    public async Task<Outcome<RecoveryView>> GetAsync(Guid id, CancellationToken ct) =>
        await ViewsAsync(db.RecoveryRequests.Where(r => r.Id == id), ct) is [var view] ? view : Failure.NotFound($"No recovery request {id}.");

    /// <summary>The newest 200 requests, in one query.</summary>
    public async Task<IReadOnlyList<RecoveryView>> ListAsync(CancellationToken ct) =>
        await ViewsAsync(db.RecoveryRequests.OrderByDescending(r => r.CreatedAt).Take(200), ct);

    public async Task<Outcome<EncryptedShareView>> ShareForAgentAsync(Guid requestId, Guid accountId, string actor, CancellationToken ct)
    {
        var (request, agent, share, failure) = await OpenRequestForAgentAsync(requestId, accountId, ct);
        if (failure is not null) return failure;
        var (certificate, sealedKey) = request!.SubmissionCertificate is { } made && request.SealedSubmissionKey is { } key
            ? (made, key) : await CreateSubmissionKeyAsync(request, ct);
        if (certificate is null || sealedKey is null) return Failure.Conflict("This recovery request has just ended.");
        try
        {
            // Checked before it goes out: a certificate swapped in the database for one whose key someone else holds would have
            // the agent seal its share to them.
            using var _ = RecoverySubmissionKey.Open(requestId, certificate, sealedKey, sessionKey);
        }
        catch (EscrowIntegrityException)
        {
            return await FailAsync(request, actor, SubmissionKeyAltered, ct);
        }
        AuditLog.Record(db, time.GetUtcNow(), actor, AuditActions.RecoveryShareDownloaded, $"recovery:{requestId}", new { agent = agent!.Name, serial = request.SerialNumber });
        await db.SaveChangesAsync(ct);
        // Each ending in a newline, as PEM files do: written one after the other they make the one file certportal-kra reads.
        return new EncryptedShareView(requestId, request.SerialNumber, AgentShareEncryption.ToPem(share!.EncryptedShare) + "\n",
            new string(PemEncoding.Write("CERTIFICATE", certificate)) + "\n");
    }

    /// <summary>Makes the request's submission key on its first download. Several nodes may do so at once: the first to store
    /// its key wins, and every download hands out the one stored.</summary>
    private async Task<(byte[]?, byte[]?)> CreateSubmissionKeyAsync(RecoveryRequest request, CancellationToken ct)
    {
        var (certificate, sealedKey) = RecoverySubmissionKey.Create(request.Id, time.GetUtcNow().AddMinutes(-5), request.ExpiresAt, sessionKey);
        var now = time.GetUtcNow();
        await db.RecoveryRequests
            .Where(r => r.Id == request.Id && r.SubmissionCertificate == null && r.CompletedAt == null && r.CancelledAt == null && r.ExpiresAt > now)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.SubmissionCertificate, certificate).SetProperty(r => r.SealedSubmissionKey, sealedKey), ct);
        var stored = await db.RecoveryRequests.AsNoTracking().Where(r => r.Id == request.Id)
            .Select(r => new { r.SubmissionCertificate, r.SealedSubmissionKey }).FirstAsync(ct);
        return (stored.SubmissionCertificate, stored.SealedSubmissionKey);
    }

    public async Task<Outcome<RecoveryView>> ApproveAsync(Guid requestId, Guid accountId, SubmitShareRequest submission, string actor, CancellationToken ct)
    {
        var (request, agent, stored, failure) = await OpenRequestForAgentAsync(requestId, accountId, ct);
        if (failure is not null) return failure;
        var opened = await SubmittedShareAsync(request!, agent!, submission, actor, ct);
        if (opened.Failure is { } refused) return refused;
        var share = opened.Value!;
        try
        {
            if (!ShareCommitment.Verify(share, stored!.Commitment, request!.EscrowId.ToByteArray()))
            {
                // An altered commitment, or someone with the agent's API key but not its share: either way worth a trace.
                return await RefuseAsync(request, agent!, actor, "A submitted share does not match its commitment.", "Share does not match.",
                    "This is not the share escrowed to you for this key (or it was altered). Decrypt the share downloaded for this request.", ct);
            }
            if (await db.RecoveryApprovals.AnyAsync(a => a.RequestId == requestId && a.AgentId == agent!.Id, ct))
                return await ViewAsync(requestId, ct); // approving twice counts once
            var now = time.GetUtcNow();
            db.RecoveryApprovals.Add(new RecoveryApproval
            {
                RequestId = requestId, AgentId = agent!.Id, ApprovedAt = now, SealedShare = sessionKey.Seal(share, Aad(requestId, agent.Id)),
            });
            AuditLog.Record(db, now, actor, AuditActions.RecoveryApproved, $"recovery:{requestId}", new { agent = agent.Name, serial = request.SerialNumber });
            try { await db.SaveChangesAsync(ct); }
            // A concurrent identical approval won (its primary key is request + agent): still counts once.
            // Any other failure is a real error and propagates.
            catch (DbUpdateException e) when (DatabaseErrors.IsUniqueViolation(e)) { db.ChangeTracker.Clear(); }
            return await ViewAsync(requestId, ct);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(share);
        }
    }

    /// <summary>The share an agent submitted: opened from a sealed share made for this request (<see cref="SealedShare"/>), or,
    /// only where <c>AcceptPlaintextShares</c> is set, taken as sent. The caller zeroes it.</summary>
    private async Task<Outcome<byte[]>> SubmittedShareAsync(RecoveryRequest request, RecoveryAgent agent, SubmitShareRequest submission, string actor,
        CancellationToken ct)
    {
        if (submission.SealedShare is not { } sealedText)
        {
            if (!options.Escrow.AcceptPlaintextShares)
                // Audited: a plaintext share is what shell history or a proxy log keeps, and what a replay would send.
                return await RefuseAsync(request, agent, actor, "A plaintext share was submitted; only sealed shares are accepted.", "Plaintext share refused.",
                    "Submit the sealed share that `certportal-kra decrypt-share` prints (field sealedShare): a plaintext share could be replayed " +
                    "to any later request of this key. Update certportal-kra if it printed a plaintext share.", ct);
            try { return Convert.FromBase64String(submission.Share ?? ""); }
            catch (FormatException) { return Failure.BadRequest("share must be the base64 share printed by `certportal-kra decrypt-share --output plaintext`."); }
        }
        byte[]? cms;
        try { cms = SealedShare.ParseSubmitted(sealedText); }
        catch (FormatException) { cms = null; }
        if (cms is null) return Failure.BadRequest("sealedShare must be what `certportal-kra decrypt-share` prints (base64 of CMS EnvelopedData, or its PEM).");
        const string notForThis = "This sealed share was not made for this recovery request.";
        if (request.SubmissionCertificate is not { } certificate || request.SealedSubmissionKey is not { } sealedKey)
            return await RefuseAsync(request, agent, actor, notForThis, "Not sealed for this request.",
                "Download your share for this request and seal it with `certportal-kra decrypt-share`.", ct);
        ECDiffieHellman key;
        try { key = RecoverySubmissionKey.Open(request.Id, certificate, sealedKey, sessionKey); }
        catch (EscrowIntegrityException) { return await FailAsync(request, actor, SubmissionKeyAltered, ct); }
        byte[]? content = null;
        try
        {
            using (key) content = SealedShare.Open(cms, key);
            if (content is null || !SealedShare.TryDecodeContent(content, out var sealedFor, out var share))
                return await RefuseAsync(request, agent, actor, notForThis, "Not sealed for this request.",
                    "This sealed share does not open with this request's key: it was made for another request (or altered). " +
                    "Download your share for this request and seal it with `certportal-kra decrypt-share`.", ct);
            if (sealedFor != request.Id)
            {
                CryptographicOperations.ZeroMemory(share);
                return await RefuseAsync(request, agent, actor, notForThis, "Not sealed for this request.",
                    $"This sealed share names request {sealedFor}, not this one.", ct);
            }
            return share;
        }
        finally
        {
            if (content is not null) CryptographicOperations.ZeroMemory(content);
        }
    }

    /// <summary>A submission that counts for nothing: audited as <c>recovery.failed</c> with the agent's name, answered 422.</summary>
    private async Task<Failure> RefuseAsync(RecoveryRequest request, RecoveryAgent agent, string actor, string error, string title, string detail,
        CancellationToken ct)
    {
        AuditLog.Record(db, time.GetUtcNow(), actor, AuditActions.RecoveryFailed, $"recovery:{request.Id}",
            new { agent = agent.Name, serial = request.SerialNumber, error });
        await db.SaveChangesAsync(ct);
        return Failure.Unprocessable(title, detail);
    }

    /// <summary>Rebuilds the key from M shares, checks it against the certificate, and returns it once as
    /// PKCS#12; the sealed shares are erased in the same transaction that marks the request completed.</summary>
    public async Task<Outcome<RecoveredKey>> ExportAsync(Guid requestId, RecoveredKeyRequest body, string actor, CancellationToken ct)
    {
        if (body.Password is not { Length: >= ServerKeyEnrollment.MinPasswordLength and <= 256 } password || password.Any(char.IsControl))
            return Failure.Unprocessable("Invalid password.", $"password must be {ServerKeyEnrollment.MinPasswordLength} to 256 printable characters.");
        if (!Pkcs12Files.TryParseFormat(body.Pkcs12Format, out var format))
            return Failure.Unprocessable("Invalid pkcs12Format.", "pkcs12Format must be aes256 (default) or compatible-3des.");
        return await WithRecoveredKeyAsync<RecoveredKey>(requestId, RecoveryPurpose.Recover, actor, async (request, _, cert, pkcs8) =>
        {
            var pfx = Pkcs12Files.Build(cert, pkcs8, [ca.Issuing.Certificate, ca.Root.Certificate], password, format, options.Escrow.Pkcs12Iterations,
                Pkcs12Files.FriendlyName(null, cert.GetNameInfo(X509NameType.EmailName, false), Pkcs12Files.ProfileOf(cert), options.Ca.OrganizationName));
            var completed = await CompleteAsync(request, actor, AuditActions.RecoveryCompleted, new { request.SerialNumber }, null, ct);
            if (completed is not null) return completed;
            return new RecoveredKey(requestId, request.SerialNumber, Convert.ToBase64String(pfx));
        }, ct);
    }

    /// <summary>Moves an escrow to the current agent set and threshold. The key is re-sealed under a
    /// fresh data key split to today's agents; the old envelope is emptied and its shares deleted in the
    /// same transaction, so shares the old agents kept (or could still decrypt) open nothing.</summary>
    public Task<Outcome<ReEscrowResult>> ReEscrowAsync(Guid requestId, string actor, CancellationToken ct) =>
        WithRecoveredKeyAsync<ReEscrowResult>(requestId, RecoveryPurpose.ReEscrow, actor, async (request, escrow, cert, pkcs8) =>
        {
            var policy = await archive.PolicyAsync(db, ct);
            var agents = await archive.UsableAgentsAsync(db, ct);
            if (KeyArchive.CheckAgents(policy, agents.Count) is { } tooFew) return tooFew;
            var now = time.GetUtcNow();
            var successor = default(KeyEscrow);
            var completed = await CompleteAsync(request, actor, AuditActions.KeyReEscrowed, null, async () =>
            {
                successor = archive.Archive(db, cert, escrow.SerialNumber, pkcs8, agents, policy.Threshold, now);
                await db.EscrowShares.Where(s => s.EscrowId == escrow.Id).ExecuteDeleteAsync(ct);
                await db.KeyEscrows.Where(e => e.Id == escrow.Id)
                    .ExecuteUpdateAsync(s => s.SetProperty(e => e.SupersededAt, now).SetProperty(e => e.Envelope, Array.Empty<byte>()), ct);
                // Other requests on the old escrow can never complete now: close them and drop their shares.
                var stale = db.RecoveryRequests.Where(r => r.EscrowId == escrow.Id && r.Id != request.Id && r.CompletedAt == null && r.CancelledAt == null);
                await db.RecoveryApprovals.Where(a => stale.Any(r => r.Id == a.RequestId))
                    .ExecuteUpdateAsync(s => s.SetProperty(a => a.SealedShare, (byte[]?)null), ct);
                // Each cancellation in the cancelled request's own audit trail, as CancelAsync records it.
                foreach (var staleId in await stale.Select(r => r.Id).ToListAsync(ct))
                    AuditLog.Record(db, now, actor, AuditActions.RecoveryCancelled, $"recovery:{staleId}", new { reason = "key re-escrowed", reEscrow = request.Id });
                await stale.ExecuteUpdateAsync(s => s.SetProperty(r => r.CancelledAt, now).SetProperty(r => r.SealedSubmissionKey, (byte[]?)null), ct);
                return new { request.SerialNumber, from = escrow.Id, to = successor.Id, threshold = policy.Threshold, agents = agents.Select(a => a.Name) };
            }, ct);
            if (completed is not null) return completed;
            return new ReEscrowResult(successor!.Id, policy.Threshold, agents.Select(a => a.Name).ToList());
        }, ct);

    /// <summary>An administrator withdraws an open request; submitted shares are erased at once.</summary>
    public async Task<Outcome<RecoveryView>> CancelAsync(Guid requestId, CancelRecoveryRequest body, string actor, CancellationToken ct)
    {
        var reason = (body.Reason ?? "").Trim();
        if (reason.Length > 256) return Failure.Unprocessable("Invalid reason.", "reason must be at most 256 characters.");
        if (!await db.RecoveryRequests.AnyAsync(r => r.Id == requestId, ct)) return Failure.NotFound($"No recovery request {requestId}.");
        var now = time.GetUtcNow();
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        // An expired request is over already: cancelling it would turn its recorded expiry into a cancellation.
        var cancelled = await db.RecoveryRequests.Where(r => r.Id == requestId && r.CompletedAt == null && r.CancelledAt == null && r.ExpiresAt > now)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.CancelledAt, now).SetProperty(r => r.SealedSubmissionKey, (byte[]?)null), ct);
        if (cancelled != 1) return Failure.Conflict("This recovery request is already completed, cancelled or expired.");
        await db.RecoveryApprovals.Where(a => a.RequestId == requestId).ExecuteUpdateAsync(s => s.SetProperty(a => a.SealedShare, (byte[]?)null), ct);
        AuditLog.Record(db, now, actor, AuditActions.RecoveryCancelled, $"recovery:{requestId}", new { reason });
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        return await ViewAsync(requestId, ct);
    }

    /// <summary>Audits each request that expired unfinished (<c>recovery.expired</c>, once), and erases the sealed shares of
    /// requests that completed, expired or were cancelled. Completion erases its own in its transaction; an approval that raced
    /// it (checked the request open, then inserted after the export committed) is erased here. Run before a request is opened
    /// and periodically by <see cref="RecoveryExpiryWorker"/> on every node.</summary>
    public async Task<int> PurgeExpiredSharesAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        await AuditExpiriesAsync(now, ct);
        var dead = db.RecoveryRequests.Where(r => r.CompletedAt != null || r.ExpiresAt <= now || r.CancelledAt != null);
        await dead.Where(r => r.SealedSubmissionKey != null).ExecuteUpdateAsync(s => s.SetProperty(r => r.SealedSubmissionKey, (byte[]?)null), ct);
        return await db.RecoveryApprovals.Where(a => a.SealedShare != null && dead.Any(r => r.Id == a.RequestId))
            .ExecuteUpdateAsync(s => s.SetProperty(a => a.SealedShare, (byte[]?)null), ct);
    }

    /// <summary>Expiry is the clock passing <see cref="RecoveryRequest.ExpiresAt"/>, seen by every read at once; the audit record
    /// of it is written here, by whichever pass finds the request first. Each request is claimed by a conditional update in the
    /// transaction that writes its record: every node's worker runs this pass, and on PostgreSQL a second node's update of the same
    /// row waits for the first's commit, then finds ExpiryAuditedAt set and claims nothing (SQLite runs one writer at a time).
    /// A request completed or cancelled before the pass found it was audited as that and is left alone.</summary>
    private async Task AuditExpiriesAsync(DateTimeOffset now, CancellationToken ct)
    {
        var expired = await db.RecoveryRequests.AsNoTracking()
            .Where(r => r.ExpiresAt <= now && r.CompletedAt == null && r.CancelledAt == null && r.ExpiryAuditedAt == null)
            // A backlog (a cluster stopped for days) is worked off 500 a pass.
            .OrderBy(r => r.ExpiresAt).Take(500).Select(r => new { r.Id, r.SerialNumber, r.ExpiresAt }).ToListAsync(ct);
        foreach (var r in expired)
        {
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            var claimed = await db.RecoveryRequests
                .Where(x => x.Id == r.Id && x.CompletedAt == null && x.CancelledAt == null && x.ExpiryAuditedAt == null)
                .ExecuteUpdateAsync(s => s.SetProperty(x => x.ExpiryAuditedAt, now), ct);
            if (claimed != 1) continue; // another node's pass, a completion or a cancellation came first
            AuditLog.Record(db, now, AuditActors.RecoveryExpiry, AuditActions.RecoveryExpired, $"recovery:{r.Id}",
                new { serial = r.SerialNumber, expiresAt = r.ExpiresAt });
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
        }
    }

    /// <summary>The step export and re-escrow share: rebuild the data key from the submitted shares, open the
    /// envelope, check that the key is the certificate's, and hand the PKCS#8 key to <paramref name="use"/>.
    /// Every secret is zeroed afterwards; an integrity failure is audited and reported, never a crash.</summary>
    private async Task<Outcome<T>> WithRecoveredKeyAsync<T>(Guid requestId, RecoveryPurpose purpose, string actor,
        Func<RecoveryRequest, KeyEscrow, X509Certificate2, byte[], Task<Outcome<T>>> use, CancellationToken ct)
    {
        var rebuilt = await RebuildDataKeyAsync(requestId, purpose, actor, ct);
        if (rebuilt.Failure is { } f) return f;
        var (request, escrow, cert, dataKey) = rebuilt.Value;
        byte[]? pkcs8 = null;
        try
        {
            pkcs8 = KeyEnvelope.Open(escrow.Envelope, dataKey, KeyEnvelopeBinding.ForCertificate(cert));
            try
            {
                // CopyWithPrivateKey refuses a key whose public half is not the certificate's.
                using var withKey = Pkcs12Files.WithPrivateKey(cert, pkcs8);
            }
            catch (Exception e) when (e is ArgumentException or CryptographicException)
            {
                return await FailAsync(request, actor, "The recovered key does not match the certificate.", ct);
            }
            return await use(request, escrow, cert, pkcs8);
        }
        catch (EscrowIntegrityException e)
        {
            return await FailAsync(request, actor, e.Message, ct);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(dataKey);
            if (pkcs8 is not null) CryptographicOperations.ZeroMemory(pkcs8);
            cert.Dispose();
        }
    }

    private async Task<Outcome<(RecoveryRequest, KeyEscrow, X509Certificate2, byte[])>> RebuildDataKeyAsync(
        Guid requestId, RecoveryPurpose purpose, string actor, CancellationToken ct)
    {
        var request = await db.RecoveryRequests.AsNoTracking().Include(r => r.Approvals).FirstOrDefaultAsync(r => r.Id == requestId, ct);
        if (request is null) return Failure.NotFound($"No recovery request {requestId}.");
        if (request.Purpose != purpose)
            return Failure.Conflict($"This request was opened for {RecoveryPurposeNames.Of(request.Purpose)}, not {RecoveryPurposeNames.Of(purpose)}.");
        if (request.StatusAt(time.GetUtcNow(), await ThresholdAsync(request, ct)) is not RecoveryStatus.Ready and var status)
            return Failure.Conflict(status == RecoveryStatus.Open
                ? $"Only {request.Approvals.Count} of the required approvals are in."
                : $"This recovery request is {Names.Of(status)}.");
        var escrow = await db.KeyEscrows.AsNoTracking().FirstAsync(e => e.Id == request.EscrowId, ct);
        var record = await db.Certificates.AsNoTracking().FirstAsync(c => c.SerialNumber == request.SerialNumber, ct);
        var shares = new List<byte[]>();
        try
        {
            foreach (var a in request.Approvals.Where(a => a.SealedShare is not null))
                shares.Add(sessionKey.Open(a.SealedShare!, Aad(request.Id, a.AgentId)));
            var dataKey = ShamirSecretSharing.Combine(shares);
            if (dataKey.Length != KeyEnvelope.DataKeySize)
            {
                CryptographicOperations.ZeroMemory(dataKey);
                throw new EscrowIntegrityException("The submitted shares do not form a data key.");
            }
            return (request, escrow, X509CertificateLoader.LoadCertificate(record.Der), dataKey);
        }
        catch (EscrowIntegrityException e)
        {
            return await FailAsync(request, actor, e.Message, ct);
        }
        // Stored rows altered so that the shares no longer fit together (threshold lowered below 2,
        // duplicate x, unequal lengths) or the certificate no longer parses: reported, not a 500.
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            return await FailAsync(request, actor, "The stored escrow, shares or certificate are inconsistent.", ct);
        }
        finally
        {
            foreach (var s in shares) CryptographicOperations.ZeroMemory(s);
        }
    }

    /// <summary>Claims completion atomically (a concurrent export or re-escrow gets 409), erases the sealed
    /// shares, and runs <paramref name="alsoInTransaction"/> (whose result becomes the audit details) in
    /// the same transaction.</summary>
    private async Task<Failure?> CompleteAsync(RecoveryRequest request, string actor, string action, object? details,
        Func<Task<object>>? alsoInTransaction, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        // Completions on one escrow are decided one after another: two re-escrows at once each claimed their own request and then
        // waited for the rows the other had changed (the old shares, each other's request), a deadlock on PostgreSQL and a 500.
        // Taken next, the claim below sees the other's cancellation and answers 409. SQLite's write transaction excludes other writers.
        await db.LockNamedAsync($"recovery-escrow:{request.EscrowId}", ct);
        // Only a request still open, unexpired and uncancelled can be claimed: the state check before the
        // key was rebuilt may be stale by now.
        var claimed = await db.RecoveryRequests.Where(r => r.Id == request.Id && r.CompletedAt == null && r.CancelledAt == null && r.ExpiresAt > now)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.CompletedAt, now).SetProperty(r => r.SealedSubmissionKey, (byte[]?)null), ct);
        if (claimed != 1) return Failure.Conflict("This recovery request has already been completed, was cancelled or has expired.");
        await db.RecoveryApprovals.Where(a => a.RequestId == request.Id).ExecuteUpdateAsync(s => s.SetProperty(a => a.SealedShare, (byte[]?)null), ct);
        if (alsoInTransaction is not null) details = await alsoInTransaction();
        AuditLog.Record(db, now, actor, action, $"recovery:{request.Id}", details);
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        return null;
    }

    private async Task<Failure> FailAsync(RecoveryRequest request, string actor, string error, CancellationToken ct)
    {
        // Tampering or corruption: reported and audited, never a crash; the request stays open for investigation.
        logger.LogError("Recovery {RequestId} for certificate {Serial} failed an integrity check: {Error}", request.Id, request.SerialNumber, error);
        AuditLog.Record(db, time.GetUtcNow(), actor, AuditActions.RecoveryFailed, $"recovery:{request.Id}", new { serial = request.SerialNumber, error });
        await db.SaveChangesAsync(CancellationToken.None);
        return Failure.Conflict($"The escrowed key failed its integrity check ({error}). Nothing was recovered; the event is audited.");
    }

    /// <summary>The request, and the calling account's agent registration and share in its escrow. An
    /// account may have several registrations over time (re-registered certificate, retired agent):
    /// whichever holds a share of this escrow counts.</summary>
    private async Task<(RecoveryRequest?, RecoveryAgent?, EscrowShare?, Failure?)> OpenRequestForAgentAsync(Guid requestId, Guid accountId, CancellationToken ct)
    {
        var registrations = await db.RecoveryAgents.AsNoTracking().Where(a => a.AccountId == accountId).ToListAsync(ct);
        if (registrations.Count == 0)
            return (null, null, null, Failure.Forbidden("Not a recovery agent.", "Your account is not a registered key recovery agent."));
        var request = await db.RecoveryRequests.AsNoTracking().Include(r => r.Approvals).FirstOrDefaultAsync(r => r.Id == requestId, ct);
        if (request is null) return (null, null, null, Failure.NotFound($"No recovery request {requestId}."));
        var status = request.StatusAt(time.GetUtcNow(), await ThresholdAsync(request, ct));
        if (status is RecoveryStatus.Completed or RecoveryStatus.Expired or RecoveryStatus.Cancelled)
            return (null, null, null, Failure.Conflict($"This recovery request is {Names.Of(status)}."));
        var agentIds = registrations.Select(a => a.Id).ToList();
        var share = await db.EscrowShares.AsNoTracking().FirstOrDefaultAsync(s => s.EscrowId == request.EscrowId && agentIds.Contains(s.AgentId), ct);
        if (share is null)
            return (null, null, null, Failure.Forbidden("Not an agent of this escrow.", "This key was escrowed to a different set of recovery agents."));
        return (request, registrations.Single(a => a.Id == share.AgentId), share, null);
    }

    private async Task<RecoveryView> ViewAsync(Guid id, CancellationToken ct) =>
        (await ViewsAsync(db.RecoveryRequests.Where(r => r.Id == id), ct)).Single();

    /// <summary>The views of <paramref name="requests"/> in one query: each request with its escrow's
    /// threshold, its approval count and the approving agents' names.</summary>
    private async Task<List<RecoveryView>> ViewsAsync(IQueryable<RecoveryRequest> requests, CancellationToken ct)
    {
        var rows = await requests.AsNoTracking().Select(r => new
        {
            Request = r,
            Threshold = db.KeyEscrows.Where(e => e.Id == r.EscrowId).Select(e => e.Threshold).First(),
            Approvals = r.Approvals.Count,
            ApprovedBy = r.Approvals.Join(db.RecoveryAgents, a => a.AgentId, agent => agent.Id, (_, agent) => agent.Name).ToList(),
        }).ToListAsync(ct);
        var now = time.GetUtcNow();
        return rows.Select(x =>
        {
            var r = x.Request;
            var status = RecoveryRequest.StatusOf(r.CompletedAt, r.CancelledAt, r.ExpiresAt, x.Approvals, x.Threshold, now);
            return new RecoveryView(r.Id, r.SerialNumber, RecoveryPurposeNames.Of(r.Purpose), r.Reason, Names.Of(status), x.Threshold, x.Approvals,
                x.ApprovedBy, r.RequestedBy, r.CreatedAt, r.ExpiresAt, r.CompletedAt);
        }).ToList();
    }

    private Task<int> ThresholdAsync(RecoveryRequest r, CancellationToken ct) =>
        db.KeyEscrows.Where(e => e.Id == r.EscrowId).Select(e => e.Threshold).FirstAsync(ct);

    private const string SubmissionKeyAltered = "The request's submission key or certificate was altered while stored.";

    private static byte[] Aad(Guid requestId, Guid agentId) => Encoding.ASCII.GetBytes($"certportal/recovery/{requestId:N}/{agentId:N}");
}
