using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Revocation;

public sealed record RevokeRequest(string? Reason);

/// <summary>Revoke, hold and release. A change returns once it is durable: the certificate's new state, its audit
/// record, its directory outbox row and a <see cref="CrlChange"/> commit together; <see cref="CrlPublisher"/> signs the
/// CRL that shows it after Crl:PublishDelay (with a zero delay, before this returns). Changes go through the
/// <see cref="GroupCommitWriter"/>: a mass revocation commits its changes in groups, one durable commit each, instead of
/// one transaction per certificate whose writers queue for SQLite's lock and back off.</summary>
public sealed class RevocationService(CertPortalDbContext db, GroupCommitWriter writer, CrlPublisher crls, CertPortalOptions options,
    TimeProvider time, IEnumerable<ICertificateEvents> observers, ILogger<RevocationService> logger)
{
    public async Task<Outcome<IssuedCertificate>> RevokeAsync(string? serialInput, RevokeRequest request, string actor, CancellationToken ct)
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
        if (reason == RevocationReason.CertificateHold && await IsStrictAsync(serial, ct))
            return Failure.Unprocessable("Hold not allowed for this certificate.",
                "This certificate was issued under a strict S/MIME BR policy (2.23.140.1.5.x.3), and S/MIME BR 7.2.2 forbid certificateHold " +
                "for strict certificates. Revoke it with a permanent reason instead; holds are available for certificates issued under a " +
                "multipurpose policy (CertPortal:Issuance:PolicyOids).");

        return await ChangeAsync(serial, actor, ct, cert =>
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

    /// <summary>A key reported compromised by other means (POST /api/v1/blocked-keys): blocked, and every
    /// certificate for it revoked for keyCompromise, with the CRL that shows them, in one transaction.</summary>
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
        await using (var tx = await db.Database.BeginTransactionAsync(ct))
        {
            await db.LockNamedAsync(CompromisedKeys.LockName(spki), ct);
            var now = time.GetUtcNow();
            (key, created, revoked) = await CompromisedKeys.BlockAsync(db, spki, algorithm, "report", string.IsNullOrEmpty(comment) ? null : comment,
                actor, now, observers, null, ct);
            if (!created && revoked.Count == 0)
                return (new BlockKeyResult(BlockedKeyView.From(key), []), false);
            if (revoked.Count > 0) db.CrlChanges.Add(new CrlChange { Authority = CertificateAuthority.IssuingName, At = now });
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
        }
        if (revoked.Count > 0) await CrlOwedAsync(ct);
        logger.LogWarning("Key {SpkiSha256} blocked as compromised by {Actor}; {Count} certificates revoked for keyCompromise", spki, actor, revoked.Count);
        return (new BlockKeyResult(BlockedKeyView.From(key), revoked.Select(c => c.SerialNumber).ToList()), created);
    }

    public async Task<Outcome<IssuedCertificate>> ReleaseHoldAsync(string? serialInput, string actor, CancellationToken ct)
    {
        if (!SerialNumber.TryNormalize(serialInput, out var serial))
            return Failure.BadRequest("The serial number must be hexadecimal (colons allowed).");
        Failure? notOnHold = null;
        var outcome = await ChangeAsync(serial, actor, ct, cert =>
        {
            notOnHold = null; // decided again if the writer retries the change alone
            if (cert.RevocationReason == RevocationReason.CertificateHold) return (null, null, AuditActions.CertificateHoldReleased);
            notOnHold = Failure.Conflict(cert.RevokedAt is null
                ? $"Certificate {serial} is not on hold."
                : $"Certificate {serial} is revoked ({cert.RevocationReason?.ToRfcName()}), which is permanent; only a hold can be released.");
            return null;
        });
        return notOnHold ?? outcome;
    }

    /// <summary>What one change did, from inside the writer's transaction: the certificate as it now is (null: none with
    /// that serial), whether anything was written, whether a CRL is owed, and how many other certificates with the same
    /// key a keyCompromise revoked.</summary>
    private sealed record Changed(IssuedCertificate? Certificate, bool Written, bool CrlOwed, string? Action, int Siblings);

    private async Task<Outcome<IssuedCertificate>> ChangeAsync(string serial, string actor, CancellationToken ct,
        Func<IssuedCertificate, (DateTimeOffset? RevokedAt, RevocationReason? Reason, string Action)?> decide, bool keyCompromised = false)
    {
        // keyCompromise blocks the key and revokes its other certificates: the key is looked up first, outside the writer.
        var spki = keyCompromised ? await SpkiOfAsync(serial, ct) : null;
        // Runs in the writer's transaction (possibly a second time, alone, if its group fails), so it decides only from
        // what it reads there.
        var done = await writer.WriteAsync(async (w, wct) =>
        {
            // Units of one group share the transaction but decide by queries, which see only what is saved: flush the
            // units before this one (an enrollment of this key must be found and revoked) and, at the end, this one
            // (an enrollment after it must see the block). Saving is not committing: the group still commits once.
            if (w.ChangeTracker.HasChanges()) await w.SaveChangesAsync(wct);
            // The key's lock before any row lock: the order every holder of both takes them (a sibling's revocation
            // would otherwise deadlock with ours).
            if (spki is not null) await w.LockNamedAsync(CompromisedKeys.LockName(spki), wct);
            // decide() must see the state its change replaces: a release and a permanent revocation of a held
            // certificate would otherwise both read "on hold" and the release could overwrite the revocation,
            // making a compromised certificate valid again. Lock the row first; the read below sees the other change
            // (and, in one group, the writer's context already holds an earlier unit's change to the same row).
            await w.LockCertificateAsync(serial, wct);
            var cert = await w.Certificates.FirstOrDefaultAsync(c => c.SerialNumber == serial, wct);
            if (cert is null) return new Changed(null, false, false, null, 0);
            var change = decide(cert);
            var now = time.GetUtcNow();
            var written = false;
            if (change is not null)
            {
                var before = cert.RevocationReason;
                cert.RevokedAt = change.Value.RevokedAt;
                cert.RevocationReason = change.Value.Reason;
                AuditLog.Record(w, now, actor, change.Value.Action, $"certificate:{serial}",
                    new { cert.Email, reason = cert.RevocationReason?.ToRfcName(), previousReason = before?.ToRfcName() });
                foreach (var o in observers) o.OnStatusChanged(w, cert, now);
                written = true;
            }
            var siblings = 0;
            if (spki is not null)
            {
                var blocked = await CompromisedKeys.BlockAsync(w, spki, cert.KeyAlgorithm, $"certificate:{serial}", null, actor, now, observers, serial, wct);
                siblings = blocked.Revoked.Count;
                written |= blocked.Created || siblings > 0;
            }
            var crlOwed = change is not null || siblings > 0;
            if (crlOwed) w.CrlChanges.Add(new CrlChange { Authority = CertificateAuthority.IssuingName, At = now });
            if (written) await w.SaveChangesAsync(wct);
            // Everything tracked is saved now: let it go, or every later unit's save would compare all of it again
            // (a group of 256 revocations tracks about 1,500 entities).
            w.ChangeTracker.Clear();
            return new Changed(cert, written, crlOwed, change?.Action, siblings);
        });
        if (done.Certificate is not { } certificate) return Failure.NotFound($"No certificate with serial number {serial} was issued by this CA.");
        if (!done.Written) return certificate;
        if (done.CrlOwed) await CrlOwedAsync(ct);
        logger.LogInformation("{Action} {Serial} for {Email} (reason {Reason}); {Siblings} other certificates with the key revoked",
            done.Action ?? AuditActions.KeyBlocked, serial, certificate.Email, certificate.RevocationReason, done.Siblings);
        return certificate;
    }

    /// <summary>After the commit: the publisher signs after Crl:PublishDelay, or now when that is zero.</summary>
    private async Task CrlOwedAsync(CancellationToken ct)
    {
        crls.ChangeCommitted();
        if (options.Crl.PublishDelay == TimeSpan.Zero) await crls.PublishAsync(ct);
    }

    /// <summary>From the certificate itself, so a configuration changed since its issuance cannot change the answer.</summary>
    private async Task<bool> IsStrictAsync(string serial, CancellationToken ct)
    {
        var der = await db.Certificates.AsNoTracking().Where(c => c.SerialNumber == serial).Select(c => c.Der).FirstOrDefaultAsync(ct);
        if (der is null) return false; // the change itself answers 404
        using var cert = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(der);
        return cert.Extensions.FirstOrDefault(e => e.Oid?.Value == Oids.CertificatePolicies) is { } policies &&
               CertificatePolicies.IsStrict(CertificatePolicies.Read(policies));
    }

    private async Task<string?> SpkiOfAsync(string serial, CancellationToken ct)
    {
        var row = await db.Certificates.AsNoTracking().Where(c => c.SerialNumber == serial)
            .Select(c => new { c.SpkiSha256, c.Der }).FirstOrDefaultAsync(ct);
        if (row is null) return null;
        if (row.SpkiSha256 is not null) return row.SpkiSha256;
        using var cert = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(row.Der);
        return SubscriberKey.SpkiHash(cert.PublicKey);
    }
}
