namespace CertPortal.Data;

public static class CertificateQueries
{
    /// <summary>The certificates of <paramref name="mailbox"/>, in any case: mailboxes compare without regard to case (their
    /// local parts are ASCII, so lower() is exact on both databases), through <c>IX_Certificates_EmailLower</c>, an index on
    /// lower("Email") (migration EmailLowerIndex). A query for one mailbox goes through here so that it uses that index: a
    /// plain comparison of "Email" or any other spelling of the condition scans the table.</summary>
    public static IQueryable<IssuedCertificate> OfMailbox(this IQueryable<IssuedCertificate> certificates, string mailbox)
    {
        var lowered = mailbox.ToLowerInvariant();
        // CA1862 would have string.Equals(..., OrdinalIgnoreCase), which EF Core cannot translate; ToLower() becomes lower().
#pragma warning disable CA1862
        return certificates.Where(c => c.Email.ToLower() == lowered);
#pragma warning restore CA1862
    }

    /// <summary>Certificates on hold at <paramref name="now"/> (an expired one is no longer held: it is just expired). One rule for
    /// the outbox, which keeps a reminder while the certificate's renewal is held, and for its listing, which says so.</summary>
    public static IQueryable<IssuedCertificate> OnHoldAt(this IQueryable<IssuedCertificate> certificates, DateTimeOffset now) =>
        certificates.Where(c => c.RevokedAt != null && c.RevocationReason == Authority.RevocationReason.CertificateHold && c.NotAfter > now);
}
