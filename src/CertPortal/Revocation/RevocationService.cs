using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Revocation;

public sealed record RevokeRequest(string? Reason);

/// <summary>Revoke, hold and release. Each change commits together with the new CRL that shows it, so
/// the served CRL never lags a confirmed revocation.</summary>
public sealed class RevocationService(CertPortalDbContext db, CrlSigner crls, TimeProvider time,
    IEnumerable<ICertificateEvents> observers, ILogger<RevocationService> logger)
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

        return await ChangeAsync(serial, actor, ct, cert =>
        {
            if (cert.RevokedAt is not null && cert.RevocationReason != RevocationReason.CertificateHold)
                return null; // already permanently revoked: revoking again is harmless and changes nothing
            if (cert.RevocationReason == RevocationReason.CertificateHold && reason == RevocationReason.CertificateHold)
                return null;
            return (cert.RevokedAt ?? time.GetUtcNow(), reason, AuditActions.CertificateRevoked);
        });
    }

    public async Task<Outcome<IssuedCertificate>> ReleaseHoldAsync(string? serialInput, string actor, CancellationToken ct)
    {
        if (!SerialNumber.TryNormalize(serialInput, out var serial))
            return Failure.BadRequest("The serial number must be hexadecimal (colons allowed).");
        Failure? notOnHold = null;
        var outcome = await ChangeAsync(serial, actor, ct, cert =>
        {
            if (cert.RevocationReason == RevocationReason.CertificateHold) return (null, null, AuditActions.CertificateHoldReleased);
            notOnHold = Failure.Conflict(cert.RevokedAt is null
                ? $"Certificate {serial} is not on hold."
                : $"Certificate {serial} is revoked ({cert.RevocationReason?.ToRfcName()}), which is permanent; only a hold can be released.");
            return null;
        });
        return notOnHold ?? outcome;
    }

    private async Task<Outcome<IssuedCertificate>> ChangeAsync(string serial, string actor, CancellationToken ct,
        Func<IssuedCertificate, (DateTimeOffset? RevokedAt, RevocationReason? Reason, string Action)?> decide)
    {
        // Retried only when a concurrent signer took the same CRL number: a safety net, since CrlSigner queues signers
        // on PostgreSQL and SQLite serialises writers.
        for (var attempt = 1; ; attempt++)
        {
            db.ChangeTracker.Clear();
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            // decide() must see the state its change replaces: a release and a permanent revocation of a held
            // certificate would otherwise both read "on hold" and the release could overwrite the revocation,
            // making a compromised certificate valid again. Lock the row first; the read below sees the other change.
            await db.LockCertificateAsync(serial, ct);
            var cert = await db.Certificates.FirstOrDefaultAsync(c => c.SerialNumber == serial, ct);
            if (cert is null) return Failure.NotFound($"No certificate with serial number {serial} was issued by this CA.");
            var change = decide(cert);
            if (change is null) return cert;

            var now = time.GetUtcNow();
            var before = cert.RevocationReason;
            cert.RevokedAt = change.Value.RevokedAt;
            cert.RevocationReason = change.Value.Reason;
            AuditLog.Record(db, now, actor, change.Value.Action, $"certificate:{serial}",
                new { cert.Email, reason = cert.RevocationReason?.ToRfcName(), previousReason = before?.ToRfcName() });
            foreach (var o in observers) o.OnStatusChanged(db, cert, now);
            await db.SaveChangesAsync(ct);
            await crls.SignAsync(db, CertificateAuthority.IssuingName, now, actor, ct);
            try
            {
                await db.SaveChangesAsync(ct);
                await tx.CommitAsync(ct);
            }
            catch (DbUpdateException) when (attempt < 5)
            {
                await tx.RollbackAsync(ct);
                continue;
            }
            logger.LogInformation("{Action} {Serial} for {Email} (reason {Reason})", change.Value.Action, serial, cert.Email, cert.RevocationReason);
            return cert;
        }
    }
}
