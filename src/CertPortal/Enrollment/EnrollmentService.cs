using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Enrollment;

public sealed record EnrollmentRequest(string? Token, string? Csr);

public sealed record EnrollmentResult(string SerialNumber, string Email, string Profile, string CertificatePem, string ChainPem,
    DateTimeOffset NotBefore, DateTimeOffset NotAfter);

/// <summary>Turns a token and a CSR into a certificate. The token is spent, the certificate signed and
/// recorded, and the audit event written in one transaction: the certificate leaves the process only
/// after that commit, so a crash can never leave a certificate issued but unrecorded or a token half-spent.</summary>
public sealed class EnrollmentService(
    CertPortalDbContext db, EnrollmentTokens tokens, CertificateIssuer issuer, CaHierarchy ca,
    CertPortalOptions options, TimeProvider time, IEnumerable<ICertificateEvents> observers, ILogger<EnrollmentService> logger)
{
    public async Task<Outcome<EnrollmentResult>> EnrollAsync(EnrollmentRequest request, string actor, CancellationToken ct)
    {
        var found = await tokens.FindUsableAsync(request.Token, ct);
        if (found.Failure is { } tokenFailure) return tokenFailure;
        var token = found.Value!;

        var inspected = CsrInspector.Inspect(request.Csr, token.Email);
        if (inspected.Failure is { } csrFailure) return csrFailure;

        return await IssueAsync(token, inspected.Value!, actor, ct);
    }

    internal async Task<Outcome<EnrollmentResult>> IssueAsync(EnrollmentToken token, SubscriberKey key, string actor, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var serial = SerialNumber.New();
        var serialHex = SerialNumber.ToHex(serial);

        await using var tx = await db.Database.BeginTransactionAsync(ct);
        // Spend first: the conditional UPDATE is the single point where concurrent enrollments with one
        // token are decided (SQLite serialises writers; PostgreSQL re-checks the WHERE after the row lock).
        var spent = await db.EnrollmentTokens
            .Where(t => t.Id == token.Id && t.UsedAt == null && t.RevokedAt == null && t.ExpiresAt > now)
            .ExecuteUpdateAsync(s => s.SetProperty(t => t.UsedAt, now).SetProperty(t => t.CertificateSerial, serialHex), ct);
        if (spent != 1)
            return Failure.Forbidden("Enrollment token already used.", "This enrollment token has already been used. Ask your administrator for a new one.");

        // A minute of backdating absorbs clock skew between us and relying parties (S/MIME BR allow up to 48 h).
        var order = new CertificateOrder(token.Email, token.DisplayName, token.Profile, key, serial,
            now.AddMinutes(-1), now.AddDays(options.Issuance.ValidityDays));
        using var cert = issuer.Issue(order);

        var record = new IssuedCertificate
        {
            SerialNumber = serialHex,
            Email = token.Email,
            DisplayName = token.DisplayName,
            Profile = token.Profile,
            KeyAlgorithm = key.Algorithm,
            SubjectDn = cert.Subject,
            NotBefore = new DateTimeOffset(cert.NotBefore.ToUniversalTime()),
            NotAfter = new DateTimeOffset(cert.NotAfter.ToUniversalTime()),
            IssuedAt = now,
            TokenId = token.Id,
            Der = cert.RawData,
            Sha256Fingerprint = Convert.ToHexString(SHA256.HashData(cert.RawData)),
        };
        db.Certificates.Add(record);
        AuditLog.Record(db, now, actor, AuditActions.CertificateIssued, $"certificate:{serialHex}",
            new { record.Email, profile = Names.Of(record.Profile), record.KeyAlgorithm, tokenId = token.Id, record.NotAfter });
        foreach (var o in observers) o.OnIssued(db, record, now);
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);

        logger.LogInformation("Issued {Profile} certificate {Serial} for {Email} ({KeyAlgorithm})",
            record.Profile, serialHex, record.Email, record.KeyAlgorithm);
        return new EnrollmentResult(serialHex, record.Email, Names.Of(record.Profile), cert.ExportCertificatePem() + "\n", ca.ChainPem,
            record.NotBefore, record.NotAfter);
    }
}

