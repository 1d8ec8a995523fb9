namespace CertPortal.Data;

/// <summary>Lets another feature (the LDAP outbox) add rows to the transaction of an issuance,
/// revocation or CRL, so what must follow the change is recorded atomically with it.</summary>
public interface ICertificateEvents
{
    void OnIssued(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now) { }

    /// <summary>What issuance calls, inside the group writer's transaction: an observer may write its rows at once
    /// (<see cref="DirectSql"/>) instead of adding tracked entities for the group's SaveChanges. By default, <see cref="OnIssued"/>.</summary>
    ValueTask OnIssuedAsync(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now, CancellationToken ct)
    {
        OnIssued(db, certificate, now);
        return ValueTask.CompletedTask;
    }

    /// <summary>Revoked, put on hold, or released from hold.</summary>
    void OnStatusChanged(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now) { }

    /// <summary>What revocation calls: it writes its own rows at once (<see cref="DirectSql"/>), and an observer may do the
    /// same instead of adding tracked entities for a later save. By default, <see cref="OnStatusChanged"/>.</summary>
    ValueTask OnStatusChangedAsync(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now, CancellationToken ct)
    {
        OnStatusChanged(db, certificate, now);
        return ValueTask.CompletedTask;
    }

    /// <summary>Revoked for keyCompromise because the certificate it was renewed from (directly or down a chain of renewals) had its key
    /// reported compromised: <paramref name="compromisedSerial"/>, the certificate for that key (<see cref="Revocation.CompromisedRenewals"/>).
    /// The same change as any other revocation for every observer but the holder's notice, whose holder may be the legitimate one and
    /// must not read that their own key was compromised. By default, <see cref="OnStatusChangedAsync"/>.</summary>
    ValueTask OnRevokedWithCompromisedPredecessorAsync(CertPortalDbContext db, IssuedCertificate certificate, string compromisedSerial,
        DateTimeOffset now, CancellationToken ct) => OnStatusChangedAsync(db, certificate, now, ct);

    void OnCrlSigned(CertPortalDbContext db, CrlRecord crl, DateTimeOffset now) { }
}
