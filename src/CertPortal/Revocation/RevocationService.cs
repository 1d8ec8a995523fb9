using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;

namespace CertPortal.Revocation;

public sealed record RevokeRequest(string? Reason);

/// <summary>A revocation's outcome: the certificate as it now is, and the other certificates a keyCompromise revoked with it
/// (those for the same key, and those renewed on the strength of it, <see cref="CompromisedRenewals"/>); empty for other reasons.</summary>
public sealed record RevokeResult(IssuedCertificate Certificate, IReadOnlyList<string> AlsoRevoked);

/// <summary>Revoke, hold and release. A change returns once it is durable: the certificate's new state, its audit
/// record, its directory outbox row and a <see cref="CrlChange"/> commit together; <see cref="CrlPublisher"/> signs the
/// CRL that shows it after Crl:PublishDelay (with a zero delay, before this returns). Changes go through the
/// <see cref="GroupCommitWriter"/>: a mass revocation commits its changes in groups, one durable commit each, instead of
/// one transaction per certificate whose writers queue for SQLite's lock and back off.</summary>
public sealed class RevocationService(CertPortalDbContext db, GroupCommitWriter writer, CrlPublisher crls, CertPortalOptions options,
    TimeProvider time, IEnumerable<ICertificateEvents> observers, ILogger<RevocationService> logger)
{
    public async Task<Outcome<RevokeResult>> RevokeAsync(string? serialInput, RevokeRequest request, string actor, CancellationToken ct)
    {
        if (!SerialNumber.TryNormalize(serialInput, out var serial))
            return Failure.BadRequest("The serial number must be hexadecimal (colons allowed).");
        if (!RevocationReasons.TryParse(request.Reason ?? "unspecified", out var reason))
            return Failure.Unprocessable("Unknown revocation reason.",
                $"reason must be one of {string.Join(", ", RevocationReasons.ForSubscribers.Select(r => r.ToRfcName()))}.");
        if (reason == RevocationReason.RemoveFromCrl)
            return Failure.Unprocessable("Use release.", "To take a certificate off hold, POST to /api/v1/certificates/{serialNumber}/release.");
        if (!RevocationReasons.ForSubscribers.Contains(reason))
            return Failure.Unprocessable("Reason not applicable.", $"{reason.ToRfcName()} describes a CA, not a subscriber certificate.");
        Func<IssuedCertificate, Failure?>? refuse = reason != RevocationReason.CertificateHold ? null : cert => !IsStrict(cert) ? null :
            Failure.Unprocessable("Hold not allowed for this certificate.",
                "This certificate was issued under a strict S/MIME BR policy (2.23.140.1.5.x.3), and S/MIME BR 7.2.2 forbid certificateHold " +
                "for strict certificates. Revoke it with a permanent reason instead; holds are available for certificates issued under a " +
                "multipurpose policy (CertPortal:Issuance:PolicyOids).");

        return await ChangeAsync(serial, actor, ct, refuse, cert =>
        {
            // Already permanently revoked: revoking again changes nothing, except that a reason may become
            // keyCompromise (as the TLS BR 7.2.2 allow) when the compromise is learnt later, which also blocks the key.
            if (cert.RevokedAt is not null && cert.RevocationReason != RevocationReason.CertificateHold)
                return reason == RevocationReason.KeyCompromise && cert.RevocationReason != reason
                    ? (cert.RevokedAt, reason, AuditActions.CertificateRevoked) : null;
            if (cert.RevocationReason == RevocationReason.CertificateHold && reason == RevocationReason.CertificateHold)
                return null;
            return (cert.RevokedAt ?? time.GetUtcNow(), reason, AuditActions.CertificateRevoked);
        }, keyCompromised: reason == RevocationReason.KeyCompromise);
    }

    /// <summary>A key reported compromised by other means (POST /api/v1/blocked-keys): blocked, and every certificate for it and
    /// every renewal proven by it (<see cref="CompromisedRenewals"/>) revoked for keyCompromise, with the CRL that shows them, in one
    /// transaction.</summary>
    public async Task<Outcome<(BlockKeyResult Result, bool Created)>> BlockKeyAsync(BlockKeyRequest request, string actor, CancellationToken ct)
    {
        var comment = request.Comment?.Trim();
        if (comment is { Length: > CompromisedKeys.MaxCommentLength } || (comment ?? "").Any(char.IsControl))
            return Failure.Unprocessable("Invalid comment.", $"comment must be at most {CompromisedKeys.MaxCommentLength} printable characters.");
        var read = CompromisedKeys.ReadPublicKey(request.Pem);
        if (read.Failure is { } unreadable) return unreadable;
        var (spki, algorithm) = read.Value;

        db.ChangeTracker.Clear();
        BlockedKey key;
        bool created;
        List<IssuedCertificate> revoked;
        int renewals;
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            await db.LockNamedAsync(CompromisedKeys.LockName(spki), ct);
            var now = time.GetUtcNow();
            var blocked = await CompromisedKeys.BlockAsync(db, spki, algorithm, "report", string.IsNullOrEmpty(comment) ? null : comment,
                actor, now, observers, null, ct);
            (key, created, revoked, renewals) = (blocked.Key, blocked.Created, [.. blocked.Revoked, .. blocked.Renewals], blocked.Renewals.Count);
            if (!created && revoked.Count == 0)
                return (new BlockKeyResult(BlockedKeyView.From(key), []), false);
            if (revoked.Count > 0) await RecordCrlChangesAsync(db, revoked.Select(c => c.SerialNumber), now, ct);
            // Observers that add tracked rows (directory outbox, mail) are saved here.
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
        }
        if (revoked.Count > 0) await CrlOwedAsync(ct);
        logger.LogWarning("Key {SpkiSha256} blocked as compromised by {Actor}; {Count} certificates revoked for keyCompromise, {Renewals} of them renewals proven by the key",
            spki, actor, revoked.Count, renewals);
        return (new BlockKeyResult(BlockedKeyView.From(key), revoked.Select(c => c.SerialNumber).ToList()), created);
    }

    public async Task<Outcome<IssuedCertificate>> ReleaseHoldAsync(string? serialInput, string actor, CancellationToken ct)
    {
        if (!SerialNumber.TryNormalize(serialInput, out var serial))
            return Failure.BadRequest("The serial number must be hexadecimal (colons allowed).");
        Failure? notOnHold = null;
        var outcome = await ChangeAsync(serial, actor, ct, null, cert =>
        {
            notOnHold = null; // decided again if the writer retries the change alone
            if (cert.RevocationReason == RevocationReason.CertificateHold) return (null, null, AuditActions.CertificateHoldReleased);
            notOnHold = Failure.Conflict(cert.RevokedAt is null
                ? $"Certificate {serial} is not on hold."
                : $"Certificate {serial} is revoked ({cert.RevocationReason?.ToRfcName()}), which is permanent; only a hold can be released.");
            return null;
        });
        if (notOnHold is { } refused) return refused;
        return outcome.Failure is { } failure ? failure : outcome.Value!.Certificate;
    }

    /// <summary>Revokes a renewed certificate as <c>superseded</c> (the renewal's SupersedeWorker) only while it is neither revoked
    /// nor on hold, decided from the row as locked in the writer's transaction: unlike <see cref="RevokeAsync"/>, which by design
    /// lets an administrator make a hold permanent, a hold placed after the worker read its list stays a hold (reversible), and a
    /// certificate revoked by another node is left as it is. True only when this call revoked it.</summary>
    public async Task<bool> SupersedeAsync(string serial, string actor, CancellationToken ct)
    {
        var revoked = false;
        await ChangeAsync(serial, actor, ct, null, cert =>
        {
            revoked = cert.RevokedAt is null; // decided again if the writer retries the change alone
            return revoked ? (time.GetUtcNow(), RevocationReason.Superseded, AuditActions.CertificateRevoked) : null;
        });
        return revoked;
    }

    /// <summary>What one change did, from inside the writer's transaction: the certificate as it now is (null: none with
    /// that serial), whether anything was written, whether a CRL is owed, the other certificates with the same key and the
    /// renewals proven by it that a keyCompromise revoked, or why the change was refused.</summary>
    private sealed record Changed(IssuedCertificate? Certificate, bool Written, bool CrlOwed, string? Action, IReadOnlyList<string> Siblings,
        IReadOnlyList<string> Renewals, Failure? Refused = null)
    {
        public static Changed Nothing(IssuedCertificate? certificate, Failure? refused = null) => new(certificate, false, false, null, [], [], refused);
    }

    private static Failure NotFound(string serial) => Failure.NotFound($"No certificate with serial number {serial} was issued by this CA.");

    /// <param name="refuse">Why the certificate (as read) cannot take this change at all, or null.</param>
    private async Task<Outcome<RevokeResult>> ChangeAsync(string serial, string actor, CancellationToken ct, Func<IssuedCertificate, Failure?>? refuse,
        Func<IssuedCertificate, (DateTimeOffset? RevokedAt, RevocationReason? Reason, string Action)?> decide, bool keyCompromised = false)
    {
        // The change runs in the writer's transaction (possibly a second time, alone, if its group fails), so it decides only
        // from what it reads there. Its rows are plain commands (DirectSql), visible at once to the units after it in the group
        // (an enrollment of this key must see the block), with nothing tracked for the group's save to compare.
        Changed done;
        if (db.HasConcurrentWriters())
        {
            // Where other writers exist (PostgreSQL, several nodes) the locks and reads are the unit's first step, which the writer
            // sends with the first steps of the other changes of its run in one round trip: for keyCompromise the key's lock, then
            // the row's lock with the certificate as committed (SELECT … FOR UPDATE), then the key's block and its other
            // certificates. Nothing is read before the change is queued: the database names the key from the row (its lock, the
            // block, the others), and the certificate's key is a key the writer learns from the read, so two changes of one key
            // (and a change after an enrollment of that key) still see each other: the writer reads again for the later one. The
            // certificate is a key from the start: a release queued after a revocation of the same certificate reads after it.
            done = await writer.WriteAsync([IssuedCertificate.WriterKey(serial)], async (w, wct) =>
            {
                // Units of one group share the transaction but decide by queries, which see only what is saved: flush what
                // units before this one left tracked (an enrollment of this key must be found and revoked).
                if (w.ChangeTracker.HasChanges()) await w.SaveChangesAsync(wct);
                // keyCompromise blocks the key and revokes its other certificates. The key's lock before any row lock: the
                // order every holder of both takes them (a sibling's revocation would otherwise deadlock with ours).
                if (keyCompromised) await w.LockCertificateKeyAsync(CompromisedKeys.LockName(""), serial, wct);
                // decide() must see the state its change replaces: a release and a permanent revocation of a held
                // certificate would otherwise both read "on hold" and the release could overwrite the revocation,
                // making a compromised certificate valid again. The row is locked and read in one statement.
                var certificate = await DirectSql.LockAndReadCertificateAsync(w, serial, wct);
                var now = time.GetUtcNow();
                return (Certificate: certificate, Key: keyCompromised ? await CompromisedKeys.ReadOfCertificateAsync(w, serial, now, wct) : null, Now: now);
            }, async (w, read, wct) =>
            {
                if (read.Certificate.Value is not { } cert) return Changed.Nothing(null);
                if (refuse?.Invoke(cert) is { } refused) return Changed.Nothing(cert, refused);
                var keyState = read.Key;
                if (keyCompromised && cert.SpkiSha256 is null)
                {
                    // Only before the start-up backfill has filled SpkiSha256: the database could not name the key, so its lock is
                    // taken now, after the row's (PostgreSQL ends a deadlock this may cause; the writer retries the group), and its
                    // state read under it.
                    await w.LockNamedAsync(CompromisedKeys.LockName(SpkiOf(cert.Der)), wct);
                    keyState = null;
                }
                return await ApplyAsync(w, cert, keyCompromised ? cert.SpkiSha256 ?? SpkiOf(cert.Der) : null, keyState, read.Now, actor, decide, wct);
            },
            // Learnt: the key, and for keyCompromise the certificates it may revoke besides this one (its other certificates and the
            // renewals proven by it), which a later change in the run (a release of a renewal's hold) must read again after this wrote.
            read => read.Certificate.Value is { } cert ? [CompromisedKeys.LockName(cert.SpkiSha256 ?? SpkiOf(cert.Der)), .. read.Key?.WriterKeys() ?? []] : []);
        }
        else
        {
            // SQLite: the writer's transaction holds the database's write lock, so the row is read once, inside it, on the
            // writer's connection: its page cache stays warm, while a pooled read connection drops its cache at every commit
            // and reads the pages again.
            done = await writer.WriteAsync(async (w, wct) =>
            {
                if (w.ChangeTracker.HasChanges()) await w.SaveChangesAsync(wct);
                var cert = await DirectSql.FindCertificateAsync(w, serial, wct);
                if (cert is null) return Changed.Nothing(null);
                if (refuse?.Invoke(cert) is { } refused) return Changed.Nothing(cert, refused);
                var spki = keyCompromised ? cert.SpkiSha256 ?? SpkiOf(cert.Der) : null;
                return await ApplyAsync(w, cert, spki, null, time.GetUtcNow(), actor, decide, wct);
            });
        }
        if (done.Refused is { } refusal) return refusal;
        if (done.Certificate is not { } certificate) return NotFound(serial);
        var result = new RevokeResult(certificate, [.. done.Siblings, .. done.Renewals]);
        if (!done.Written) return result;
        if (done.CrlOwed) await CrlOwedAsync(ct);
        logger.LogInformation("{Action} {Serial} for {Email} (reason {Reason}); {Siblings} other certificates with the key and {Renewals} renewals proven by it revoked",
            done.Action ?? AuditActions.KeyBlocked, serial, certificate.Email, certificate.RevocationReason, done.Siblings.Count, done.Renewals.Count);
        return result;
    }

    /// <summary>The change itself, in the writer's transaction, once the certificate's current state is in <paramref name="cert"/>:
    /// its new state, audit record and observers' rows, and for keyCompromise (<paramref name="spki"/> set) the key's block and
    /// its other certificates' revocations (from <paramref name="keyState"/> when the unit read it already).</summary>
    private async Task<Changed> ApplyAsync(CertPortalDbContext w, IssuedCertificate cert, string? spki, CompromisedKeys.KeyState? keyState,
        DateTimeOffset now, string actor, Func<IssuedCertificate, (DateTimeOffset? RevokedAt, RevocationReason? Reason, string Action)?> decide,
        CancellationToken ct)
    {
        var serial = cert.SerialNumber;
        var change = decide(cert);
        var written = false;
        if (change is not null)
        {
            var before = cert.RevocationReason;
            cert.RevokedAt = change.Value.RevokedAt;
            cert.RevocationReason = change.Value.Reason;
            await DirectSql.WriteRevocationAsync(w, cert, ct);
            await AuditLog.RecordNowAsync(w, now, actor, change.Value.Action, $"certificate:{serial}",
                new { cert.Email, reason = cert.RevocationReason?.ToRfcName(), previousReason = before?.ToRfcName() }, ct);
            foreach (var o in observers) await o.OnStatusChangedAsync(w, cert, now, ct);
            written = true;
        }
        List<string> siblings = [], renewals = [];
        if (spki is not null)
        {
            var blocked = await CompromisedKeys.BlockAsync(w, spki, cert.KeyAlgorithm, $"certificate:{serial}", null, actor, now, observers, serial, ct,
                keyState);
            siblings = [.. blocked.Revoked.Select(c => c.SerialNumber)];
            renewals = [.. blocked.Renewals.Select(c => c.SerialNumber)];
            written |= blocked.Created || siblings.Count > 0 || renewals.Count > 0;
        }
        var others = siblings.Concat(renewals);
        var crlOwed = change is not null || siblings.Count > 0 || renewals.Count > 0;
        if (crlOwed) await RecordCrlChangesAsync(w, change is null ? others : others.Prepend(serial), now, ct);
        // Observers that add tracked rows (directory outbox, mail): saved now, for the units after this one, and let
        // go, or every later unit's save would compare them again.
        if (w.ChangeTracker.HasChanges())
        {
            await w.SaveChangesAsync(ct);
            w.ChangeTracker.Clear();
        }
        return new Changed(cert, written, crlOwed, change?.Action, siblings, renewals);
    }

    /// <summary>The CRL owes these certificates' changes (<see cref="CrlChange"/>). With delta CRLs, a row per certificate: a delta
    /// lists what those rows name. Without, one row per transaction is enough (see <see cref="FirstCrlChangeOf"/>).</summary>
    private async Task RecordCrlChangesAsync(CertPortalDbContext w, IEnumerable<string> serials, DateTimeOffset now, CancellationToken ct)
    {
        if (!options.Crl.DeltasEnabled)
        {
            if (FirstCrlChangeOf(w)) await DirectSql.InsertCrlChangeAsync(w, CertificateAuthority.IssuingName, now, ct);
            return;
        }
        foreach (var serial in serials) await DirectSql.InsertCrlChangeAsync(w, CertificateAuthority.IssuingName, now, ct, serial);
    }

    /// <summary>Whether this is the first change of the writer's transaction to owe a CRL. Without delta CRLs one <see cref="CrlChange"/>
    /// row per transaction is enough (the publisher signs when any exists and deletes the ones it read), so a group of revocations
    /// writes one instead of one each. A group that fails is retried on new transactions, which write their own. Keyed by
    /// EF Core's transaction object, which is new for every transaction (Npgsql reuses its own transaction objects).</summary>
    private static bool FirstCrlChangeOf(CertPortalDbContext w) =>
        w.Database.CurrentTransaction is not { } transaction || CrlOwedIn.TryAdd(transaction, Owed);

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<IDbContextTransaction, object> CrlOwedIn = [];
    private static readonly object Owed = new();

    /// <summary>After the commit: the publisher signs after Crl:PublishDelay, or now when that is zero. Signed now, the change
    /// does not also wake the publisher's own pass, which would run a second pass for it and find nothing owed (and, not awaited by
    /// anyone, raced tests that change CRL state after a revocation); only a signing that failed here wakes it, to try again at
    /// once. Such a failure is not the caller's: the change is durable, its CrlChange row keeps the CRL owed, and the call still
    /// answers with the change (as it does with a non-zero delay, where the signing comes later anyway). A 500 here would tell an
    /// administrator that a committed revocation had failed.</summary>
    private async Task CrlOwedAsync(CancellationToken ct)
    {
        if (options.Crl.PublishDelay > TimeSpan.Zero)
        {
            crls.ChangeCommitted();
            return;
        }
        try
        {
            await crls.PublishAsync(ct);
        }
        catch (Exception e)
        {
            crls.ChangeCommitted();
            if (e is OperationCanceledException && ct.IsCancellationRequested) throw;
            logger.LogError(e, "Signing the CRL for a committed change failed; the CRL publisher tries again now");
        }
    }

    /// <summary>From the certificate itself, so a configuration changed since its issuance cannot change the answer.</summary>
    private static bool IsStrict(IssuedCertificate certificate)
    {
        using var cert = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(certificate.Der);
        return cert.Extensions.FirstOrDefault(e => e.Oid?.Value == Oids.CertificatePolicies) is { } policies &&
               CertificatePolicies.IsStrict(CertificatePolicies.Read(policies));
    }

    /// <summary>For rows written before SpkiSha256 existed and not yet backfilled.</summary>
    private static string SpkiOf(byte[] der)
    {
        using var cert = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(der);
        return SubscriberKey.SpkiHash(cert.PublicKey);
    }
}
