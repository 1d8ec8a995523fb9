using System.Security.Cryptography.X509Certificates;
using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Revocation;

/// <summary>Signs CRLs (RFC 5280 §5) into the caller's transaction. The CRL number is the previous
/// number + 1; the (authority, number) key makes a concurrent duplicate fail instead of publishing twice.</summary>
public sealed class CrlSigner(CaHierarchy ca, CertPortalOptions options, IEnumerable<ICertificateEvents> observers)
{
    public async Task<CrlRecord> SignAsync(CertPortalDbContext db, string authority, DateTimeOffset now, string actor, CancellationToken ct)
    {
        var signer = ca[authority];
        // Without this, concurrent revocations on PostgreSQL read the same last number and all but one fail on
        // the key (the caller's retries could run out under load). Held until the caller's transaction ends.
        await db.LockNamedAsync("crl:" + authority, ct);
        var lastNumber = await db.Crls.Where(c => c.Authority == authority).MaxAsync(c => (long?)c.Number, ct) ?? 0;
        var entries = new List<CrlEntry>();
        if (authority == CertificateAuthority.IssuingName)
        {
            // Entries stay until the certificate expires (RFC 5280 §3.3 allows removal after that).
            var revoked = await db.Certificates.AsNoTracking()
                .Where(c => c.RevokedAt != null && c.NotAfter > now)
                .Select(c => new { c.SerialNumber, c.RevokedAt, c.RevocationReason })
                .ToListAsync(ct);
            foreach (var r in revoked.OrderBy(r => r.SerialNumber, StringComparer.Ordinal))
            {
                // S/MIME BR 7.2.2: the reasonCode is omitted rather than "unspecified".
                X509RevocationReason? reason = r.RevocationReason is null or RevocationReason.Unspecified
                    ? null : (X509RevocationReason)(int)r.RevocationReason.Value;
                entries.Add(new CrlEntry(Convert.FromHexString(r.SerialNumber), r.RevokedAt!.Value, reason));
            }
        }
        var lifetime = authority == CertificateAuthority.RootName ? options.Crl.RootLifetime : options.Crl.Lifetime;
        var der = CrlEncoder.Build(signer, lastNumber + 1, now, now + lifetime, entries);
        var record = new CrlRecord
        {
            Authority = authority, Number = lastNumber + 1, ThisUpdate = now, NextUpdate = now + lifetime, EntryCount = entries.Count, Der = der,
        };
        db.Crls.Add(record);
        AuditLog.Record(db, now, actor, AuditActions.CrlSigned, $"crl:{authority}:{record.Number}", new { entries = entries.Count, record.NextUpdate });
        foreach (var o in observers) o.OnCrlSigned(db, record, now);
        return record;
    }

    public static Task<CrlRecord?> LatestAsync(CertPortalDbContext db, string authority, CancellationToken ct) =>
        db.Crls.AsNoTracking().Where(c => c.Authority == authority).OrderByDescending(c => c.Number).FirstOrDefaultAsync(ct);
}
