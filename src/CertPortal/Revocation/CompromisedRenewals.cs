using CertPortal.Authority;
using CertPortal.Data;

namespace CertPortal.Revocation;

/// <summary>Self-service renewal takes the renewed certificate's key as its whole proof (<see cref="Renewal.RenewalService"/>): whoever
/// holds that key can renew to a certificate for the mailbox with a key of their own, valid for a full new lifetime (or, for an
/// escrowed encryption ID, a server-made key under their own password). Once the key is known compromised that proof is worth
/// nothing, so a keyCompromise revokes the certificates issued on its strength with it, in the same transaction: the renewal of a
/// certificate for the key, the renewal of that one, and so on down the chain, each proven by a chain that starts at the compromised
/// key. Nothing before the compromised certificate is touched (its predecessor's key proved nothing false).
/// <para>Reason keyCompromise: the renewal's key may be the attacker's, and relying parties must distrust it, and what it signed,
/// as they distrust the original. Its key is not blocked, though (blocking is per key, not per revocation reason: only
/// <see cref="CompromisedKeys.BlockAsync"/>, for the key known compromised, writes <see cref="BlockedKey"/> rows, and these revocations
/// are written here without it): the key is not known compromised, it is as likely the holder's own new key pair, which they may
/// certify again. A renewal revoked already for another reason (superseded, say) gets keyCompromise as
/// its reason, its revocation time kept, as the key's own certificates do; one on hold is revoked (RFC 5280 lets a hold become a
/// permanent revocation); one expired is left, as expired certificates for the key are.</para>
/// <para>A renewal racing the compromise (another node, or the writer's other lane, on PostgreSQL) cannot leave a valid renewal
/// behind, whichever commits first. The renewal records its successor by a conditional update of the renewed certificate's row
/// (RenewedBy set only while RevokedAt is null, <see cref="Renewal.RenewalService.GrantFor"/>), and this walk reads each certificate's
/// RenewedBy under that row's lock: the compromised certificate's own lock is taken before anything is read (RevocationService), the
/// other valid certificates for the key are locked and read again by <see cref="CompromisedKeys.BlockAsync"/>, and each renewal here
/// before its RenewedBy is followed. So of the two transactions one waits for the other's row lock: the renewal committed first, the
/// walk reads its RenewedBy after that commit and revokes the successor; the revocation first, the renewal's update (its WHERE checked
/// again after the lock, read committed) finds RevokedAt set and records nothing, and the renewal is refused. The certificates for the
/// key that are read without a lock are revoked or expired ones, whose RenewedBy no renewal can set any more. In the group writer a
/// renewal names the certificate it renews among its keys, so a revocation of it never reads it in the same run of first steps, before
/// the renewal's second step wrote (see <see cref="Enrollment.EnrollmentService.SignAndRecordAsync"/>).</para></summary>
public static class CompromisedRenewals
{
    /// <summary>Revokes, in the caller's transaction (which holds the compromised key's lock), the renewals named by <paramref name="known"/>
    /// (each with the certificate for the key its chain starts from) and their renewals in turn, each read again under its row lock.
    /// Returns those this call revoked.</summary>
    internal static async Task<List<IssuedCertificate>> RevokeAsync(CertPortalDbContext db, string spkiSha256, IEnumerable<(string Serial, string Cause)> known,
        string actor, DateTimeOffset now, IEnumerable<ICertificateEvents> observers, CancellationToken ct)
    {
        var due = new Queue<(string Serial, string Cause)>(known.OrderBy(r => r.Serial, StringComparer.Ordinal));
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var revoked = new List<IssuedCertificate>();
        while (due.TryDequeue(out var next))
        {
            if (!seen.Add(next.Serial)) continue;
            await db.LockCertificateAsync(next.Serial, ct);
            if (await DirectSql.FindCertificateAsync(db, next.Serial, ct) is not { } renewal) continue;
            // Followed whatever becomes of this one: a renewal revoked already may have been renewed before that.
            if (renewal.RenewedBy is { } after) due.Enqueue((after, next.Cause));
            // Renewed with the same key (Renewal:AllowKeyReuse): a certificate for the compromised key, which BlockAsync has revoked.
            if (renewal.SpkiSha256 == spkiSha256) continue;
            // Revoked already for another reason (superseded, a hold, ...): the reason becomes keyCompromise, its revocation time kept,
            // as for the key's own certificates (CompromisedKeys.BlockAsync): relying parties trust what a superseded certificate
            // signed before its revocation, and a renewal made with a stolen key deserves no such trust.
            if (renewal.RevocationReason == RevocationReason.KeyCompromise) continue;
            if (renewal.NotAfter <= now) continue;
            await CompromisedKeys.RevokeAsync(db, renewal, actor, now, observers, before => new
            {
                renewal.Email, reason = RevocationReason.KeyCompromise.ToRfcName(), previousReason = before, renewal.RenewalOf,
                provenByCompromisedKeyOf = $"certificate:{next.Cause}",
            }, ct, compromisedPredecessor: next.Cause);
            revoked.Add(renewal);
        }
        return revoked;
    }
}
