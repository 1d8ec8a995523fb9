using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Enrollment;

namespace CertPortal.Mail;

/// <summary>Tells holders when their certificate is revoked, put on hold, or released from hold. The notice is
/// queued in the transaction of the change, so it is sent exactly when the change commits. Dedupe keys: a
/// revocation is final (one notice per certificate), except that its reason may later become keyCompromise (an admin learns
/// of the compromise, or the key is blocked), which the holder is told in a notice of its own: it changes what they must do
/// with the key. Holds and releases can repeat, so their keys carry the time.</summary>
public sealed class CertificateNotices(MailOptions options, MailQueue queue) : ICertificateEvents
{
    /// <summary>The holder of a renewal revoked for its predecessor's compromised key is told that, not that their own key may be
    /// compromised: nobody reported it, and it is as likely their own new key as an attacker's. Keyed as any keyCompromise notice of
    /// the certificate: it is revoked for keyCompromise once.</summary>
    public ValueTask OnRevokedWithCompromisedPredecessorAsync(CertPortalDbContext db, IssuedCertificate certificate, string compromisedSerial,
        DateTimeOffset now, CancellationToken ct)
    {
        if (options.Enabled)
            queue.Enqueue(db, OutboundMessageKinds.RevocationNotice, $"{certificate.SerialNumber}:{RevocationReason.KeyCompromise.ToRfcName()}",
                new MessageModel(certificate.Email, certificate.DisplayName, Names.Of(certificate.Profile), certificate.SerialNumber,
                    NotAfter: certificate.NotAfter, Reason: certificate.RevocationReason?.ToRfcName(), At: now, CompromisedPredecessor: compromisedSerial),
                options.OrganizationName, now);
        return ValueTask.CompletedTask;
    }

    public void OnStatusChanged(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now)
    {
        if (!options.Enabled) return;
        var (kind, key) = certificate.RevokedAt switch
        {
            null => (OutboundMessageKinds.ReleaseNotice, $"{certificate.SerialNumber}:{now.UtcTicks}"),
            { } at when certificate.RevocationReason == RevocationReason.CertificateHold =>
                (OutboundMessageKinds.HoldNotice, $"{certificate.SerialNumber}:{at.UtcTicks}"),
            // The same key for that upgrade made the change's transaction fail on the unique (Kind, DedupeKey): a 500, and the
            // key was never blocked.
            _ when certificate.RevocationReason == RevocationReason.KeyCompromise =>
                (OutboundMessageKinds.RevocationNotice, $"{certificate.SerialNumber}:{RevocationReason.KeyCompromise.ToRfcName()}"),
            _ => (OutboundMessageKinds.RevocationNotice, certificate.SerialNumber),
        };
        queue.Enqueue(db, kind, key, new MessageModel(certificate.Email, certificate.DisplayName, Names.Of(certificate.Profile),
            certificate.SerialNumber, NotAfter: certificate.NotAfter, Reason: certificate.RevocationReason?.ToRfcName(), At: now,
            // Superseded after a renewal (the supersede worker, or an administrator): the notice names the certificate that replaces it.
            RenewedBy: certificate.RevocationReason == RevocationReason.Superseded ? certificate.RenewedBy : null),
            options.OrganizationName, now);
    }
}
