using System.Security.Cryptography;
using CertPortal.Authority;

namespace CertPortal.Data;

/// <summary>A one-time, expiring permission to enrol one mailbox. Only the SHA-256 of the secret is kept.</summary>
public sealed class EnrollmentToken
{
    public Guid Id { get; set; }
    public byte[] TokenHash { get; set; } = [];
    public string Email { get; set; } = "";
    public string DisplayName { get; set; } = "";
    public CertificateProfileName Profile { get; set; }
    public DateTimeOffset CreatedAt { get; set; }
    public string CreatedBy { get; set; } = "";
    public DateTimeOffset ExpiresAt { get; set; }
    public DateTimeOffset? UsedAt { get; set; }
    public DateTimeOffset? RevokedAt { get; set; }
    /// <summary>Who revoked it (an account, or <c>directory-enrollment</c> when a run withdrew it); null before it was recorded.</summary>
    public string? RevokedBy { get; set; }
    /// <summary>The directory enrollment run that made it (its invitation); null for a token made by hand. Only such tokens are
    /// withdrawn when their person leaves the directory, and only their revocation by an administrator holds the job back.</summary>
    public long? DirectoryEnrollmentRunId { get; set; }
    public string? CertificateSerial { get; set; }
    /// <summary>Server-generated keys enrolled with a requestId: the PKCS#12 handed out, sealed under a key derived
    /// from the requestId (never stored), so a retry with the same requestId can collect it. Erased after a day.</summary>
    public byte[]? RetryPackage { get; set; }

    public TokenStatus StatusAt(DateTimeOffset now) =>
        RevokedAt is not null ? TokenStatus.Revoked
        : UsedAt is not null ? TokenStatus.Used
        : ExpiresAt <= now ? TokenStatus.Expired
        : TokenStatus.Pending;
}

public enum TokenStatus { Pending, Used, Expired, Revoked }

/// <summary>Every certificate the issuing CA signed. Written in the same transaction as the signature.</summary>
public sealed class IssuedCertificate
{
    /// <summary>Names a certificate for the group writer (its units' keys, <see cref="GroupCommitWriter.WriteAsync{TFirst, T}"/>): a change
    /// of its state, or a renewal of it, is never in one run of first steps with another unit that names it.</summary>
    public static string WriterKey(string serialNumber) => "certificate:" + serialNumber;

    /// <summary>Upper-case hex, no separators, as printed by openssl.</summary>
    public string SerialNumber { get; set; } = "";
    public string Email { get; set; } = "";
    public string DisplayName { get; set; } = "";
    public CertificateProfileName Profile { get; set; }
    public string KeyAlgorithm { get; set; } = "";
    public string SubjectDn { get; set; } = "";
    public DateTimeOffset NotBefore { get; set; }
    public DateTimeOffset NotAfter { get; set; }
    public DateTimeOffset IssuedAt { get; set; }
    public Guid? TokenId { get; set; }
    public byte[] Der { get; set; } = [];
    /// <summary>Made from the DER when asked for, not stored: 65 bytes less per row puts four certificates in a 4 KiB page
    /// where three fitted, and the console and the API are its only readers (nothing looks a certificate up by it).</summary>
    public string Sha256Fingerprint => Convert.ToHexString(SHA256.HashData(Der));
    /// <summary>SHA-256 of the certified SubjectPublicKeyInfo (see SubscriberKey.SpkiHash). Null only in rows
    /// written before it existed, until the start-up backfill fills them.</summary>
    public string? SpkiSha256 { get; set; }
    public DateTimeOffset? RevokedAt { get; set; }
    public RevocationReason? RevocationReason { get; set; }
    /// <summary>Self-service renewal: the certificate this one renewed (its holder proved that key).</summary>
    public string? RenewalOf { get; set; }
    /// <summary>The certificate that renewed this one; set once, by a conditional update, so a certificate is renewed once.</summary>
    public string? RenewedBy { get; set; }
    /// <summary>When control of the mailbox was last validated: the creation of the token whose link enrolled it (the link is the
    /// random value of S/MIME BR 3.2.2.2 that an invitation mails to the mailbox; the BR count a validation's reuse from when it
    /// was initiated, 3.2.2), carried unchanged to every renewal down the chain. A renewal proves the key, not the mailbox, so
    /// it is refused once this is older than <see cref="Renewal.RenewalOptions.MailboxValidationReuse"/>.</summary>
    public DateTimeOffset MailboxValidatedAt { get; set; }

    public CertificateStatus StatusAt(DateTimeOffset now) =>
        RevokedAt is not null ? (RevocationReason == Authority.RevocationReason.CertificateHold ? CertificateStatus.OnHold : CertificateStatus.Revoked)
        : NotAfter <= now ? CertificateStatus.Expired
        : NotBefore > now ? CertificateStatus.NotYetValid
        : CertificateStatus.Valid;
}

public enum CertificateStatus { Valid, Revoked, OnHold, Expired, NotYetValid }

/// <summary>The latest CRL of a CA, and its latest delta CRL when delta CRLs are on (one row of each kind per CA: the
/// publisher deletes the one it replaces, so storage grows with the revocations, not with their square). Complete and
/// delta CRLs share one number sequence (RFC 5280 §5.2.3).</summary>
public sealed class CrlRecord
{
    public string Authority { get; set; } = "";
    public long Number { get; set; }
    /// <summary>Null for a complete CRL; for a delta CRL the number of the complete CRL it updates (deltaCRLIndicator).</summary>
    public long? DeltaOf { get; set; }
    public bool IsDelta => DeltaOf is not null;
    public DateTimeOffset ThisUpdate { get; set; }
    public DateTimeOffset NextUpdate { get; set; }
    public int EntryCount { get; set; }
    public byte[] Der { get; set; } = [];
}

/// <summary>A revocation, hold or release the next CRL of <see cref="Authority"/> must show. Written in the
/// change's own transaction (insert-only, so concurrent revocations never wait for each other) and deleted by the
/// CRL publisher in the transaction of the complete CRL that shows it; a row not yet in a delta CRL means a CRL is owed.
/// With delta CRLs off, one row per transaction says only that; with them on, one row per certificate names it, and the
/// rows stay until the next complete CRL: they are what a delta CRL lists, so it need not read every revoked row.</summary>
public sealed class CrlChange
{
    public long Id { get; set; }
    public string Authority { get; set; } = "";
    public DateTimeOffset At { get; set; }
    /// <summary>The certificate whose entry changed. Null: a change of unknown scope (delta CRLs off on the node that
    /// wrote it, or rows from before this column), after which delta CRLs are computed from every revoked row until
    /// the next complete CRL.</summary>
    public string? SerialNumber { get; set; }
    /// <summary>The number of the first delta CRL that showed this change; null while a CRL is owed for it.</summary>
    public long? InDelta { get; set; }
}

/// <summary>Who did what, when: tokens, issuance, revocation, configuration.</summary>
public sealed class AuditEvent
{
    public long Id { get; set; }
    public DateTimeOffset At { get; set; }
    public string Actor { get; set; } = "";
    public string Action { get; set; } = "";
    public string Target { get; set; } = "";
    public string? Details { get; set; }
}
