using System.Security.Cryptography.X509Certificates;
using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Revocation;

/// <summary>Signs CRLs (RFC 5280 §5) into the caller's transaction, under a cluster-wide lock per CA, so one node
/// signs each CRL: the number is the previous + 1, and thisUpdate is now (whole seconds), never before the previous
/// one's however the nodes' clocks differ, and never after now: a CRL whose thisUpdate is still to come is "not yet
/// valid" to OpenSSL and NSS, so the revocations in it would not count. Two CRLs signed within one second share
/// thisUpdate (and so Last-Modified); <see cref="CrlPublisher"/> avoids that by waiting for the next second, and the
/// ETag (the CRL number) tells them apart regardless. The CRL replaces the previous one: only the latest is kept.</summary>
public sealed class CrlSigner(CaHierarchy ca, CertPortalOptions options, IEnumerable<ICertificateEvents> observers)
{
    public async Task<CrlRecord> SignAsync(CertPortalDbContext db, string authority, DateTimeOffset now, string actor, CancellationToken ct)
    {
        var signer = ca[authority];
        // Held until the caller's transaction ends: the next signer reads this one's number and thisUpdate.
        await db.LockNamedAsync("crl:" + authority, ct);
        var previous = await db.Crls.AsNoTracking().Where(c => c.Authority == authority).OrderByDescending(c => c.Number)
            .Select(c => new { c.Number, c.ThisUpdate }).FirstOrDefaultAsync(ct);
        var thisUpdate = WholeSeconds(now);
        // Only a node whose clock lags the previous signer's takes the previous time: order over freshness.
        if (previous is not null && thisUpdate < WholeSeconds(previous.ThisUpdate))
            thisUpdate = WholeSeconds(previous.ThisUpdate);
        var number = (previous?.Number ?? 0) + 1;

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
        var der = CrlEncoder.Build(signer, number, thisUpdate, thisUpdate + lifetime, entries);
        var record = new CrlRecord
        {
            Authority = authority, Number = number, ThisUpdate = thisUpdate, NextUpdate = thisUpdate + lifetime, EntryCount = entries.Count, Der = der,
        };
        await db.Crls.Where(c => c.Authority == authority && c.Number < number).ExecuteDeleteAsync(ct);
        db.Crls.Add(record);
        AuditLog.Record(db, now, actor, AuditActions.CrlSigned, $"crl:{authority}:{record.Number}", new { entries = entries.Count, record.NextUpdate });
        foreach (var o in observers) o.OnCrlSigned(db, record, now);
        return record;
    }

    public static Task<CrlRecord?> LatestAsync(CertPortalDbContext db, string authority, CancellationToken ct) =>
        db.Crls.AsNoTracking().Where(c => c.Authority == authority).OrderByDescending(c => c.Number).FirstOrDefaultAsync(ct);

    internal static DateTimeOffset WholeSeconds(DateTimeOffset t) =>
        new(t.UtcTicks - t.UtcTicks % TimeSpan.TicksPerSecond, TimeSpan.Zero);
}
