namespace CertPortal.Data;

/// <summary>Lets another feature (the LDAP outbox) add rows to the transaction of an issuance,
/// revocation or CRL, so what must follow the change is recorded atomically with it.</summary>
public interface ICertificateEvents
{
    void OnIssued(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now) { }

    /// <summary>Revoked, put on hold, or released from hold.</summary>
    void OnStatusChanged(CertPortalDbContext db, IssuedCertificate certificate, DateTimeOffset now) { }

    void OnCrlSigned(CertPortalDbContext db, CrlRecord crl, DateTimeOffset now) { }
}
