using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Escrow;

public sealed record RegisterAgentRequest(Guid? AccountId, string? CertificatePem);
public sealed record AgentView(Guid Id, Guid AccountId, string Name, string CertificateSha256, string Subject, DateTimeOffset NotAfter,
    DateTimeOffset RegisteredAt, DateTimeOffset? RetiredAt);
public sealed record PolicyUpdate(int? Threshold, int? MinimumAgents, string? EncryptionKeyGeneration, string? DualKeyGeneration);
public sealed record OpenRecoveryRequest(string? SerialNumber, string? Reason, string? Purpose);
public sealed record RecoveryView(Guid Id, string SerialNumber, string Purpose, string Reason, string Status, int Threshold,
    int Approvals, IReadOnlyList<string> ApprovedBy, string RequestedBy, DateTimeOffset CreatedAt, DateTimeOffset ExpiresAt, DateTimeOffset? CompletedAt);
public sealed record EncryptedShareView(Guid RequestId, string SerialNumber, string EncryptedSharePem);
public sealed record SubmitShareRequest(string? Share);
public sealed record RecoveredKeyRequest(string? Password, string? Pkcs12Format);
public sealed record RecoveredKey(Guid RequestId, string SerialNumber, string Pkcs12);
public sealed record ReEscrowResult(Guid EscrowId, int Threshold, IReadOnlyList<string> Agents);
public sealed record CancelRecoveryRequest(string? Reason);

/// <summary>Recovery agents, the escrow policy, and M-of-N recovery. The server holds a recovered key
/// only for the request that completes the recovery, and submitted shares only sealed under a key
/// kept outside the database, until the request completes or expires.</summary>
public sealed class KeyRecovery(CertPortalDbContext db, KeyArchive archive, CertPortalOptions options, TimeProvider time,
    RecoverySessionKey sessionKey, CaHierarchy ca, ILogger<KeyRecovery> logger)
{
    public async Task<Outcome<AgentView>> RegisterAgentAsync(RegisterAgentRequest request, string actor, CancellationToken ct)
    {
        var account = await db.Accounts.AsNoTracking().FirstOrDefaultAsync(a => a.Id == request.AccountId && a.DisabledAt == null, ct);
        if (account is null || account.Role != Security.Roles.RecoveryAgent)
            return Failure.Unprocessable("Invalid accountId.", "accountId must name an enabled account with the recovery-agent role.");
        X509Certificate2 cert;
        try { cert = X509Certificate2.CreateFromPem(request.CertificatePem ?? ""); }
        catch (CryptographicException) { return Failure.Unprocessable("Invalid certificatePem.", "certificatePem must be one PEM X.509 certificate."); }
        using (cert)
        {
            var check = new AgentCertificateValidator(time).Validate(cert);
            if (!check.IsValid) return Failure.Unprocessable("Unsuitable agent certificate.", check.Error!);
            if (await db.RecoveryAgents.AnyAsync(a => a.AccountId == account.Id && a.RetiredAt == null, ct))
                return Failure.Conflict($"Account '{account.Name}' is already an active recovery agent; retire it first to change its certificate.");
            // One key, one agent: the same key registered for two accounts would let one person hold two shares.
            var publicKey = cert.PublicKey.ExportSubjectPublicKeyInfo();
            foreach (var other in await db.RecoveryAgents.AsNoTracking().Where(a => a.RetiredAt == null).ToListAsync(ct))
            {
                using var otherCert = X509CertificateLoader.LoadCertificate(other.CertificateDer);
                if (otherCert.PublicKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(publicKey))
                    return Failure.Conflict($"This public key is already registered for recovery agent '{other.Name}'; every agent needs its own key.");
            }
            var now = time.GetUtcNow();
            var agent = new RecoveryAgent
            {
                Id = Guid.CreateVersion7(now), AccountId = account.Id, Name = account.Name, CertificateDer = cert.RawData,
                CertificateSha256 = Convert.ToHexString(SHA256.HashData(cert.RawData)), RegisteredAt = now,
            };
            db.RecoveryAgents.Add(agent);
            AuditLog.Record(db, now, actor, AuditActions.AgentRegistered, $"recovery-agent:{agent.Id}", new { agent.Name, agent.CertificateSha256 });
            await db.SaveChangesAsync(ct);
            return View(agent);
        }
    }

    public async Task<IReadOnlyList<AgentView>> ListAgentsAsync(CancellationToken ct) =>
        (await db.RecoveryAgents.AsNoTracking().OrderBy(a => a.RegisteredAt).ToListAsync(ct)).Select(View).ToList();

    /// <summary>Retiring an agent re-wraps nothing: new escrows leave it out, existing escrows keep the
    /// agent set they were made with, and the retired agent can still approve those with its share (so
    /// retiring never makes a key unrecoverable). Re-escrow moves an escrow to the current set; disabling
    /// the account stops the agent altogether.</summary>
    public async Task<Outcome<AgentView>> RetireAgentAsync(Guid id, string actor, CancellationToken ct)
    {
        var agent = await db.RecoveryAgents.FirstOrDefaultAsync(a => a.Id == id, ct);
        if (agent is null) return Failure.NotFound($"No recovery agent {id}.");
        if (agent.RetiredAt is null)
        {
            agent.RetiredAt = time.GetUtcNow();
            AuditLog.Record(db, agent.RetiredAt.Value, actor, AuditActions.AgentRetired, $"recovery-agent:{agent.Id}", new { agent.Name });
            await db.SaveChangesAsync(ct);
        }
        return View(agent);
    }

    public async Task<EscrowPolicyView> PolicyAsync(CancellationToken ct)
    {
        var p = await archive.PolicyAsync(db, ct);
        return new EscrowPolicyView(p.Threshold, p.MinimumAgents!.Value, await db.RecoveryAgents.CountAsync(a => a.RetiredAt == null, ct),
            p.EncryptionKeyGeneration.ToString(), p.DualKeyGeneration.ToString());
    }

    public async Task<Outcome<EscrowPolicyView>> UpdatePolicyAsync(PolicyUpdate update, string actor, CancellationToken ct)
    {
        var current = await archive.PolicyAsync(db, ct);
        var threshold = update.Threshold ?? current.Threshold;
        if (threshold is < 2 or > 16)
            return Failure.Unprocessable("Invalid threshold.", "threshold (M) must be between 2 and 16: one agent alone must never recover a key.");
        var minimumAgents = update.MinimumAgents ?? Math.Max(current.MinimumAgents!.Value, threshold);
        if (minimumAgents < threshold || minimumAgents > ShamirSecretSharing.MaxShares)
            return Failure.Unprocessable("Invalid minimumAgents.", $"minimumAgents (N) must be at least threshold (M = {threshold}) and at most {ShamirSecretSharing.MaxShares}.");
        if (!TryPolicy(update.EncryptionKeyGeneration, current.EncryptionKeyGeneration, out var enc) || !TryPolicy(update.DualKeyGeneration, current.DualKeyGeneration, out var dual))
            return Failure.Unprocessable("Invalid key generation policy.", "encryptionKeyGeneration and dualKeyGeneration must be Refused, Allowed or Required.");
        var now = time.GetUtcNow();
        var row = await db.EscrowPolicy.OrderBy(p => p.Id).FirstOrDefaultAsync(ct);
        if (row is null) db.EscrowPolicy.Add(row = new EscrowPolicyRecord());
        row.Threshold = threshold; row.MinimumAgents = minimumAgents; row.EncryptionKeyGeneration = enc; row.DualKeyGeneration = dual; row.UpdatedAt = now; row.UpdatedBy = actor;
        AuditLog.Record(db, now, actor, AuditActions.EscrowPolicyChanged, "escrow-policy", new { threshold, minimumAgents, enc, dual });
        await db.SaveChangesAsync(ct);
        return await PolicyAsync(ct);
    }

    private static bool TryPolicy(string? value, KeyGenerationPolicy current, out KeyGenerationPolicy policy)
    {
        policy = current;
        return value is null || (Enum.TryParse(value, ignoreCase: true, out policy) && Enum.IsDefined(policy));
    }

    public async Task<Outcome<RecoveryView>> OpenAsync(OpenRecoveryRequest request, string actor, CancellationToken ct)
    {
        var serial = (request.SerialNumber ?? "").Trim().ToUpperInvariant();
        var purpose = (request.Purpose ?? "recover").Trim().ToLowerInvariant();
        if (purpose is not ("recover" or "re-escrow"))
            return Failure.Unprocessable("Invalid purpose.", "purpose must be recover (default) or re-escrow.");
        var reason = (request.Reason ?? "").Trim();
        if (reason.Length is 0 or > 256)
            return Failure.Unprocessable("Invalid reason.", "reason is required (at most 256 characters): it goes into the audit log.");
        var escrow = await db.KeyEscrows.AsNoTracking().FirstOrDefaultAsync(e => e.SerialNumber == serial && e.SupersededAt == null, ct);
        if (escrow is null) return Failure.NotFound($"No escrowed key for certificate '{Mailbox.Sanitize(serial)}'.");
        await PurgeExpiredSharesAsync(ct);
        var now = time.GetUtcNow();
        var r = new RecoveryRequest
        {
            Id = Guid.CreateVersion7(now), EscrowId = escrow.Id, SerialNumber = serial, Purpose = purpose, Reason = reason,
            RequestedBy = actor, CreatedAt = now, ExpiresAt = now + options.Escrow.RecoveryRequestLifetime,
        };
        db.RecoveryRequests.Add(r);
        AuditLog.Record(db, now, actor, AuditActions.RecoveryRequested, $"recovery:{r.Id}", new { serial, purpose, reason });
        await db.SaveChangesAsync(ct);
        return await ViewAsync(r.Id, ct);
    }

    public async Task<Outcome<RecoveryView>> GetAsync(Guid id, CancellationToken ct) =>
        await db.RecoveryRequests.AnyAsync(r => r.Id == id, ct) ? await ViewAsync(id, ct) : Failure.NotFound($"No recovery request {id}.");

    public async Task<IReadOnlyList<RecoveryView>> ListAsync(CancellationToken ct)
    {
        var ids = await db.RecoveryRequests.AsNoTracking().OrderByDescending(r => r.CreatedAt).Select(r => r.Id).Take(200).ToListAsync(ct);
        var views = new List<RecoveryView>();
        foreach (var id in ids) views.Add(await ViewAsync(id, ct));
        return views;
    }

    public async Task<Outcome<EncryptedShareView>> ShareForAgentAsync(Guid requestId, Guid accountId, string actor, CancellationToken ct)
    {
        var (request, agent, share, failure) = await OpenRequestForAgentAsync(requestId, accountId, ct);
        if (failure is not null) return failure;
        AuditLog.Record(db, time.GetUtcNow(), actor, AuditActions.RecoveryShareDownloaded, $"recovery:{requestId}", new { agent = agent!.Name, serial = request!.SerialNumber });
        await db.SaveChangesAsync(ct);
        return new EncryptedShareView(requestId, request!.SerialNumber, AgentShareEncryption.ToPem(share!.EncryptedShare));
    }

    public async Task<Outcome<RecoveryView>> ApproveAsync(Guid requestId, Guid accountId, SubmitShareRequest submission, string actor, CancellationToken ct)
    {
        var (request, agent, stored, failure) = await OpenRequestForAgentAsync(requestId, accountId, ct);
        if (failure is not null) return failure;
        byte[] share;
        try { share = Convert.FromBase64String(submission.Share ?? ""); }
        catch (FormatException) { return Failure.BadRequest("share must be the base64 share printed by `certportal-kra decrypt-share`."); }
        try
        {
            if (!ShareCommitment.Verify(share, stored!.Commitment, request!.EscrowId.ToByteArray()))
                return Failure.Unprocessable("Share does not match.",
                    "This is not the share escrowed to you for this key (or it was altered). Decrypt the share downloaded for this request.");
            if (await db.RecoveryApprovals.AnyAsync(a => a.RequestId == requestId && a.AgentId == agent!.Id, ct))
                return await ViewAsync(requestId, ct); // approving twice counts once
            var now = time.GetUtcNow();
            db.RecoveryApprovals.Add(new RecoveryApproval
            {
                RequestId = requestId, AgentId = agent!.Id, ApprovedAt = now, SealedShare = sessionKey.Seal(share, Aad(requestId, agent.Id)),
            });
            AuditLog.Record(db, now, actor, AuditActions.RecoveryApproved, $"recovery:{requestId}", new { agent = agent.Name, serial = request.SerialNumber });
            try { await db.SaveChangesAsync(ct); }
            catch (DbUpdateException) { db.ChangeTracker.Clear(); } // a concurrent identical approval won: still counts once
            return await ViewAsync(requestId, ct);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(share);
        }
    }

    /// <summary>Rebuilds the key from M shares, checks it against the certificate, and returns it once as
    /// PKCS#12; the sealed shares are erased in the same transaction that marks the request completed.</summary>
    public async Task<Outcome<RecoveredKey>> ExportAsync(Guid requestId, RecoveredKeyRequest body, string actor, CancellationToken ct)
    {
        if (body.Password is not { Length: >= ServerKeyEnrollment.MinPasswordLength and <= 256 } password || password.Any(char.IsControl))
            return Failure.Unprocessable("Invalid password.", $"password must be {ServerKeyEnrollment.MinPasswordLength} to 256 printable characters.");
        if (!Pkcs12Files.TryParseFormat(body.Pkcs12Format, out var format))
            return Failure.Unprocessable("Invalid pkcs12Format.", "pkcs12Format must be aes256 (default) or compatible-3des.");
        var rebuilt = await RebuildDataKeyAsync(requestId, "recover", actor, ct);
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
            var pfx = Pkcs12Files.Build(cert, pkcs8, [ca.Issuing.Certificate, ca.Root.Certificate], password, format, options.Escrow.Pkcs12Iterations);
            var completed = await CompleteAsync(request, actor, AuditActions.RecoveryCompleted, new { request.SerialNumber }, null, ct);
            if (completed is not null) return completed;
            return new RecoveredKey(requestId, request.SerialNumber, Convert.ToBase64String(pfx));
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

    /// <summary>Moves an escrow to the current agent set and threshold. The key is re-sealed under a
    /// fresh data key split to today's agents; the old envelope is emptied and its shares deleted in the
    /// same transaction, so shares the old agents kept (or could still decrypt) open nothing.</summary>
    public async Task<Outcome<ReEscrowResult>> ReEscrowAsync(Guid requestId, string actor, CancellationToken ct)
    {
        var rebuilt = await RebuildDataKeyAsync(requestId, "re-escrow", actor, ct);
        if (rebuilt.Failure is { } f) return f;
        var (request, escrow, cert, dataKey) = rebuilt.Value;
        byte[]? pkcs8 = null;
        try
        {
            pkcs8 = KeyEnvelope.Open(escrow.Envelope, dataKey, KeyEnvelopeBinding.ForCertificate(cert));
            try
            {
                using var withKey = Pkcs12Files.WithPrivateKey(cert, pkcs8);
            }
            catch (Exception e) when (e is ArgumentException or CryptographicException)
            {
                return await FailAsync(request, actor, "The recovered key does not match the certificate.", ct);
            }
            var policy = await archive.PolicyAsync(db, ct);
            var agents = await archive.UsableAgentsAsync(db, ct);
            if (KeyArchive.CheckAgents(policy, agents.Count) is { } tooFew) return tooFew;
            var now = time.GetUtcNow();
            var key = pkcs8;
            var successor = default(KeyEscrow);
            var completed = await CompleteAsync(request, actor, AuditActions.KeyReEscrowed, null, async () =>
            {
                successor = archive.Archive(db, cert, escrow.SerialNumber, key, agents, policy.Threshold, now);
                await db.EscrowShares.Where(s => s.EscrowId == escrow.Id).ExecuteDeleteAsync(ct);
                await db.KeyEscrows.Where(e => e.Id == escrow.Id)
                    .ExecuteUpdateAsync(s => s.SetProperty(e => e.SupersededAt, now).SetProperty(e => e.Envelope, Array.Empty<byte>()), ct);
                // Other requests on the old escrow can never complete now: close them and drop their shares.
                var stale = db.RecoveryRequests.Where(r => r.EscrowId == escrow.Id && r.Id != request.Id && r.CompletedAt == null && r.CancelledAt == null);
                await db.RecoveryApprovals.Where(a => stale.Any(r => r.Id == a.RequestId))
                    .ExecuteUpdateAsync(s => s.SetProperty(a => a.SealedShare, (byte[]?)null), ct);
                await stale.ExecuteUpdateAsync(s => s.SetProperty(r => r.CancelledAt, now), ct);
                return new { request.SerialNumber, from = escrow.Id, to = successor.Id, threshold = policy.Threshold, agents = agents.Select(a => a.Name) };
            }, ct);
            if (completed is not null) return completed;
            return new ReEscrowResult(successor!.Id, policy.Threshold, agents.Select(a => a.Name).ToList());
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

    /// <summary>An administrator withdraws an open request; submitted shares are erased at once.</summary>
    public async Task<Outcome<RecoveryView>> CancelAsync(Guid requestId, CancelRecoveryRequest body, string actor, CancellationToken ct)
    {
        var reason = (body.Reason ?? "").Trim();
        if (reason.Length > 256) return Failure.Unprocessable("Invalid reason.", "reason must be at most 256 characters.");
        if (!await db.RecoveryRequests.AnyAsync(r => r.Id == requestId, ct)) return Failure.NotFound($"No recovery request {requestId}.");
        var now = time.GetUtcNow();
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        var cancelled = await db.RecoveryRequests.Where(r => r.Id == requestId && r.CompletedAt == null && r.CancelledAt == null)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.CancelledAt, now), ct);
        if (cancelled != 1) return Failure.Conflict("This recovery request is already completed or cancelled.");
        await db.RecoveryApprovals.Where(a => a.RequestId == requestId).ExecuteUpdateAsync(s => s.SetProperty(a => a.SealedShare, (byte[]?)null), ct);
        AuditLog.Record(db, now, actor, AuditActions.RecoveryCancelled, $"recovery:{requestId}", new { reason });
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        return await ViewAsync(requestId, ct);
    }

    /// <summary>Erases the sealed shares of requests that expired or were cancelled before completing.
    /// Run before every recovery operation and periodically by <see cref="RecoveryExpiryWorker"/>.</summary>
    public async Task<int> PurgeExpiredSharesAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var dead = db.RecoveryRequests.Where(r => r.CompletedAt == null && (r.ExpiresAt <= now || r.CancelledAt != null));
        return await db.RecoveryApprovals.Where(a => a.SealedShare != null && dead.Any(r => r.Id == a.RequestId))
            .ExecuteUpdateAsync(s => s.SetProperty(a => a.SealedShare, (byte[]?)null), ct);
    }

    private async Task<Outcome<(RecoveryRequest, KeyEscrow, X509Certificate2, byte[])>> RebuildDataKeyAsync(
        Guid requestId, string purpose, string actor, CancellationToken ct)
    {
        var request = await db.RecoveryRequests.AsNoTracking().Include(r => r.Approvals).FirstOrDefaultAsync(r => r.Id == requestId, ct);
        if (request is null) return Failure.NotFound($"No recovery request {requestId}.");
        if (request.Purpose != purpose)
            return Failure.Conflict($"This request was opened for {request.Purpose}, not {purpose}.");
        if (Status(request, time.GetUtcNow(), await ThresholdAsync(request, ct)) is not "ready" and var status)
            return Failure.Conflict(status == "open"
                ? $"Only {request.Approvals.Count} of the required approvals are in."
                : $"This recovery request is {status}.");
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
        // Only a request still open, unexpired and uncancelled can be claimed: the state check before the
        // key was rebuilt may be stale by now.
        var claimed = await db.RecoveryRequests.Where(r => r.Id == request.Id && r.CompletedAt == null && r.CancelledAt == null && r.ExpiresAt > now)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.CompletedAt, now), ct);
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
        var status = Status(request, time.GetUtcNow(), await ThresholdAsync(request, ct));
        if (status is "completed" or "expired" or "cancelled")
            return (null, null, null, Failure.Conflict($"This recovery request is {status}."));
        var agentIds = registrations.Select(a => a.Id).ToList();
        var share = await db.EscrowShares.AsNoTracking().FirstOrDefaultAsync(s => s.EscrowId == request.EscrowId && agentIds.Contains(s.AgentId), ct);
        if (share is null)
            return (null, null, null, Failure.Forbidden("Not an agent of this escrow.", "This key was escrowed to a different set of recovery agents."));
        return (request, registrations.Single(a => a.Id == share.AgentId), share, null);
    }

    private async Task<RecoveryView> ViewAsync(Guid id, CancellationToken ct)
    {
        var r = await db.RecoveryRequests.AsNoTracking().Include(x => x.Approvals).FirstAsync(x => x.Id == id, ct);
        var threshold = await ThresholdAsync(r, ct);
        var agentIds = r.Approvals.Select(a => a.AgentId).ToList();
        var names = await db.RecoveryAgents.AsNoTracking().Where(a => agentIds.Contains(a.Id)).Select(a => a.Name).ToListAsync(ct);
        return new RecoveryView(r.Id, r.SerialNumber, r.Purpose, r.Reason, Status(r, time.GetUtcNow(), threshold), threshold, r.Approvals.Count,
            names, r.RequestedBy, r.CreatedAt, r.ExpiresAt, r.CompletedAt);
    }

    private Task<int> ThresholdAsync(RecoveryRequest r, CancellationToken ct) =>
        db.KeyEscrows.Where(e => e.Id == r.EscrowId).Select(e => e.Threshold).FirstAsync(ct);

    private static string Status(RecoveryRequest r, DateTimeOffset now, int threshold) =>
        r.CompletedAt is not null ? "completed"
        : r.CancelledAt is not null ? "cancelled"
        : r.ExpiresAt <= now ? "expired"
        : r.Approvals.Count >= threshold ? "ready"
        : "open";

    private static byte[] Aad(Guid requestId, Guid agentId) => Encoding.ASCII.GetBytes($"certportal/recovery/{requestId:N}/{agentId:N}");

    private static AgentView View(RecoveryAgent a)
    {
        using var cert = X509CertificateLoader.LoadCertificate(a.CertificateDer);
        return new AgentView(a.Id, a.AccountId, a.Name, a.CertificateSha256, cert.Subject, new DateTimeOffset(cert.NotAfter.ToUniversalTime()),
            a.RegisteredAt, a.RetiredAt);
    }
}
