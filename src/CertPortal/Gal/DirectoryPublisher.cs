using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Revocation;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Gal;

/// <summary>Brings one directory entry in step with the database. Every operation reconciles state
/// (what should be there vs what is there) instead of replaying deltas, so running it twice, late,
/// or out of order gives the same directory.</summary>
public sealed class DirectoryPublisher(LdapDirectory directory, CaHierarchy ca, DirectoryOptions options, CertPortalOptions portal, TimeProvider time,
    CrlPublisher crls)
{
    /// <summary>What changed in the directory: certificates added and removed.</summary>
    public sealed record Change(int Added, int Removed);

    /// <summary>The certificates that should be on a person's entry now: those of each of its mailboxes that are valid (not
    /// revoked, not on hold, not expired), and with <see cref="DirectoryOptions.PublishOnlyNewest"/> only the newest per
    /// mailbox and profile.</summary>
    public async Task<List<IssuedCertificate>> DesiredAsync(CertPortalDbContext db, IReadOnlyCollection<string> mailboxes, CancellationToken ct)
    {
        if (!options.PublishPersonalData) return [];
        var now = time.GetUtcNow();
        // Every spelling of the mailbox: LDAP finds the entry by mail without regard to case, and the outbox may name it as the
        // entry spells it (a resync sweep) or as another certificate's request did. Matching the case exactly here removed a
        // valid certificate issued to "bob@…" when the entry was reconciled as "Bob@…", and two certificates issued under two
        // spellings removed each other in turn.
        var candidates = new List<IssuedCertificate>();
        foreach (var mailbox in mailboxes.Distinct(StringComparer.OrdinalIgnoreCase))
        {
            candidates.AddRange(await db.Certificates.AsNoTracking().OfMailbox(mailbox).Where(c => c.RevokedAt == null).ToListAsync(ct));
        }
        var valid = candidates.Where(c => c.StatusAt(now) == CertificateStatus.Valid).OrderByDescending(c => c.NotBefore).ThenByDescending(c => c.IssuedAt);
        return options.PublishOnlyNewest ? valid.GroupBy(c => (Mailbox: c.Email.ToLowerInvariant(), c.Profile)).Select(g => g.First()).ToList() : valid.ToList();
    }

    /// <param name="fence">Asked before each write (the outbox's lease); null where nothing else writes the entry.</param>
    public async Task<Change> SyncPersonAsync(CertPortalDbContext db, string email, DirectoryWriteFence? fence, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(options.PeopleBaseDn)) return new Change(0, 0);
        // Both attributes: a publication or removal cut off between its two modifications (userCertificate, then
        // userSMIMECertificate) leaves them different, and only comparing each with the database repairs that.
        var (certificates, smime, mails) = await directory.GetPublishedAsync(email, ct);
        // Before the database is read: what it says must be no older than the moment this entry became ours alone.
        if (fence is not null) await fence.EnterPersonEntryAsync([email, .. mails], ct);
        // The certificates of every mailbox the entry answers to (mail is multi-valued: aliases). Those of the mailbox the
        // entry was found by alone removed an alias's valid certificates, and a resync's sweep, which names an entry by its
        // first mail value, removed those of every other.
        var desired = await DesiredAsync(db, [email, .. mails], ct);
        var ours = certificates.Where(IsOurs).ToList();
        var oursSmime = smime.Where(IsOurs).ToList();
        static bool In(List<byte[]> set, byte[] der) => set.Any(o => o.AsSpan().SequenceEqual(der));

        var added = 0;
        // Publishing is idempotent per attribute: it adds only what is missing from each.
        foreach (var cert in desired.Where(d => !In(ours, d.Der) || !In(oursSmime, d.Der)))
        {
            await directory.PublishCertificateAsync(email, cert.DisplayName, cert.Der, fence, ct);
            added++;
        }
        var removed = 0;
        foreach (var der in ours.Concat(oursSmime.Where(s => !In(ours, s))).Where(o => !desired.Any(d => d.Der.AsSpan().SequenceEqual(o))))
        {
            if (await directory.RemoveCertificateAsync(email, der, fence, ct)) removed++;
        }
        return new Change(added, removed);
    }

    public async Task SyncPkiAsync(CertPortalDbContext db, DirectoryWriteFence? fence, CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(options.PkiEntryDn)) return;
        // The latest CRLs as the CRL publisher holds them in memory (read from the database only when newer): a complete
        // CRL may be tens of megabytes, and every CRL signed queues a publication.
        var crl = await crls.LatestAsync(db, CertificateAuthority.IssuingName, delta: false, ct);
        // deltaRevocationList beside the complete CRL (RFC 4523 §2.6), only while delta CRLs are on; once they are off, the
        // one published while they were on is taken away (a null delta alone means "none signed yet", and leaves it).
        var deltas = portal.Crl.DeltasEnabled;
        var delta = deltas ? await crls.LatestAsync(db, CertificateAuthority.IssuingName, delta: true, ct) : null;
        await directory.PublishCaAndCrlAsync(options.PkiEntryDn, [ca.Issuing.Certificate.RawData, ca.Root.Certificate.RawData], crl?.Der, delta?.Der, fence,
            deltaCrlsOff: !deltas, ct);
        if (string.IsNullOrWhiteSpace(options.RootPkiEntryDn)) return;
        var rootCrl = await crls.LatestAsync(db, CertificateAuthority.RootName, delta: false, ct);
        await directory.PublishCaAndCrlAsync(options.RootPkiEntryDn, [ca.Root.Certificate.RawData], rootCrl?.Der, null, fence, cancellationToken: ct);
    }

    /// <summary>The mailboxes whose entries hold a certificate of ours, whatever the database says.</summary>
    public async Task<IReadOnlyList<string>> MailboxesHoldingOurCertificatesAsync(CancellationToken ct)
    {
        if (string.IsNullOrWhiteSpace(options.PeopleBaseDn)) return [];
        var people = await directory.ListPeopleWithCertificatesAsync(ct);
        return people.Where(p => p.Certificates.Any(IsOurs)).Select(p => p.Mail).Distinct(StringComparer.OrdinalIgnoreCase).ToList();
    }

    /// <summary>Ours: issuer name and authority key identifier both those of our issuing CA (another CA
    /// may share the name). Certificates from other CAs on the same entry are never touched.</summary>
    private bool IsOurs(byte[] der)
    {
        try
        {
            using var cert = X509CertificateLoader.LoadCertificate(der);
            var aki = cert.Extensions.OfType<X509AuthorityKeyIdentifierExtension>().FirstOrDefault()?.KeyIdentifier;
            var ski = ca.Issuing.Certificate.Extensions.OfType<X509SubjectKeyIdentifierExtension>().First().SubjectKeyIdentifierBytes;
            return cert.IssuerName.RawData.AsSpan().SequenceEqual(ca.Issuing.Certificate.SubjectName.RawData)
                && aki is { } keyId && keyId.Span.SequenceEqual(ski.Span);
        }
        catch (System.Security.Cryptography.CryptographicException)
        {
            return false; // not a certificate we could have written
        }
    }
}
