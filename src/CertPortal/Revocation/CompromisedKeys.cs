using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Revocation;

public sealed record BlockKeyRequest(string? Pem, string? Comment);

public sealed record BlockedKeyView(string SpkiSha256, string KeyAlgorithm, DateTimeOffset BlockedAt, string BlockedBy, string Source, string? Comment)
{
    public static BlockedKeyView From(BlockedKey k) => new(k.SpkiSha256, k.KeyAlgorithm, k.BlockedAt, k.BlockedBy, k.Source, k.Comment);
}

public sealed record BlockKeyResult(BlockedKeyView Key, IReadOnlyList<string> RevokedCertificates);

/// <summary>Key hygiene (S/MIME BR 6.1.1.3 (4) and 4.9.1.1): once a key is known compromised it is blocked
/// for good, and every other unexpired certificate for it is revoked for keyCompromise in the same
/// transaction. The per-key named lock orders this against enrollment: an enrollment holding the lock
/// either commits first (and its certificate is then found and revoked here) or sees the block.</summary>
public static class CompromisedKeys
{
    public const int MaxCommentLength = 512;

    /// <summary>Taken before any certificate row (by revocation) and after the token (by enrollment): one order, no deadlock.</summary>
    public static string LockName(string spkiSha256) => "spki:" + spkiSha256;

    /// <summary>In the caller's transaction, after <see cref="LockName"/> is held. Every enrollment asks, inside the group
    /// writer's transaction: one plain command (see <see cref="DirectSql"/>).</summary>
    public static async Task<Failure?> RefuseIfBlockedAsync(CertPortalDbContext db, string spkiSha256, CancellationToken ct) =>
        Refusal(await DirectSql.BlockedAtAsync(db, spkiSha256, ct));

    /// <summary>The answer to a request for a key blocked at <paramref name="blockedAt"/>; null when it is not blocked.</summary>
    public static Failure? Refusal(DateTimeOffset? blockedAt) =>
        blockedAt is not { } at ? null : Failure.Unprocessable("Key blocked as compromised.",
            $"This public key was reported compromised on {at:yyyy-MM-dd} and can never be certified again " +
            "(S/MIME BR 6.1.1.3): generate a new key pair and a new CSR.");

    /// <summary>Blocks the key (if it is not already) and revokes every other unexpired certificate for it for
    /// keyCompromise, each audited, and the certificates renewed on the strength of one of them (<see cref="CompromisedRenewals"/>).
    /// The caller holds the key's lock and commits together with a new CRL. Rows are written at once with plain commands
    /// (<see cref="DirectSql"/>): a mass revocation runs this for every certificate.
    /// <paramref name="read"/>: the block, the serials and the renewals of <see cref="ReadOfCertificateAsync"/>, when the caller read them already.</summary>
    internal static async Task<(BlockedKey Key, bool Created, List<IssuedCertificate> Revoked, List<IssuedCertificate> Renewals)> BlockAsync(
        CertPortalDbContext db, string spkiSha256, string keyAlgorithm, string source, string? comment, string actor, DateTimeOffset now,
        IEnumerable<ICertificateEvents> observers, string? alreadyHandledSerial, CancellationToken ct, KeyState? read = null)
    {
        var key = read is null ? await DirectSql.FindBlockedKeyAsync(db, spkiSha256, ct) : read.Key.Value;
        var created = key is null;
        if (key is null)
        {
            key = new BlockedKey
            {
                SpkiSha256 = spkiSha256, KeyAlgorithm = keyAlgorithm, BlockedAt = now, BlockedBy = actor, Source = source, Comment = comment,
            };
            await DirectSql.InsertBlockedKeyAsync(db, key, ct);
            await AuditLog.RecordNowAsync(db, now, actor, AuditActions.KeyBlocked, $"key:{spkiSha256}", new { keyAlgorithm, source, comment }, ct);
        }

        var found = read is null ? await DirectSql.KeyCertificatesAsync(db, spkiSha256, alreadyHandledSerial, now, ct) : read.Certificates.Value;
        var serials = found.NotCompromised;
        var revoked = new List<IssuedCertificate>();
        foreach (var serial in serials.Order(StringComparer.Ordinal))
        {
            // Re-read under the row lock: a concurrent revocation of this certificate may have committed since.
            await db.LockCertificateAsync(serial, ct);
            if (await DirectSql.FindCertificateAsync(db, serial, ct) is not { } sibling) continue;
            // Revoked already for another reason (superseded, a hold, ...): the reason becomes keyCompromise, as a direct revocation
            // learning of the compromise later makes it (TLS BR 7.2.2), keeping the revocation date. Relying parties treat
            // keyCompromise apart (a signature made with the key before the revocation date is suspect too), and every
            // certificate for the key is now listed so.
            if (sibling.RevocationReason == RevocationReason.KeyCompromise) continue;
            await RevokeAsync(db, sibling, actor, now, observers,
                before => new { sibling.Email, reason = RevocationReason.KeyCompromise.ToRfcName(), previousReason = before, sameKeyAs = source }, ct);
            revoked.Add(sibling);
        }

        // The renewals start from what was read (read != null: before the siblings' row locks, see CompromisedRenewals) and from the
        // siblings as read again under their locks just now.
        var renewals = await CompromisedRenewals.RevokeAsync(db, spkiSha256,
            found.Renewals.Concat(revoked.Where(s => s.RenewedBy is not null).Select(s => (s.RenewedBy!, s.SerialNumber))), actor, now, observers, ct);
        return (key, created, revoked, renewals);
    }

    /// <summary>Revokes <paramref name="certificate"/>, read under its row lock, for keyCompromise (a revocation time it has, from a hold or
    /// another reason, is kept) with its audit record (<paramref name="details"/>, given the reason it had) and the observers' rows (directory
    /// outbox, look-up change, mail): what every revocation a compromise causes writes. <paramref name="compromisedPredecessor"/>: for a
    /// renewal revoked because the certificate it was renewed from is the compromised key's, that certificate's serial.</summary>
    internal static async Task RevokeAsync(CertPortalDbContext db, IssuedCertificate certificate, string actor, DateTimeOffset now,
        IEnumerable<ICertificateEvents> observers, Func<string?, object> details, CancellationToken ct, string? compromisedPredecessor = null)
    {
        var before = certificate.RevocationReason?.ToRfcName();
        certificate.RevokedAt ??= now;
        certificate.RevocationReason = RevocationReason.KeyCompromise;
        await DirectSql.WriteRevocationAsync(db, certificate, ct);
        await AuditLog.RecordNowAsync(db, now, actor, AuditActions.CertificateRevoked, $"certificate:{certificate.SerialNumber}", details(before), ct);
        foreach (var o in observers)
        {
            if (compromisedPredecessor is null) await o.OnStatusChangedAsync(db, certificate, now, ct);
            else await o.OnRevokedWithCompromisedPredecessorAsync(db, certificate, compromisedPredecessor, now, ct);
        }
    }

    /// <summary>What <see cref="BlockAsync"/> decides from: the key's block, if any, and its other certificates
    /// (<see cref="DirectSql.KeyCertificatesAsync"/>: those not revoked for good, and the first renewals of each).</summary>
    internal sealed record KeyState(Later<BlockedKey?> Key, Later<KeyCertificates> Certificates)
    {
        /// <summary>The group writer's keys of the certificates a keyCompromise may change besides its own: a change of one of them later in
        /// the same run of first steps (a release of a renewal's hold, say) must read it again after this one wrote, or it would decide
        /// from the state before and could undo the revocation. Renewals of renewals are not among them (they are found by the walk, after
        /// this read): a release of such a second renewal's hold in the same run of first steps is the one case left to that.</summary>
        public IEnumerable<string> WriterKeys() =>
            Certificates.Value.NotCompromised.Concat(Certificates.Value.Renewals.Select(r => r.Serial)).Select(IssuedCertificate.WriterKey);
    }

    /// <summary>Reads the <see cref="KeyState"/> of the key of the certificate <paramref name="serial"/> (the others of that key), whose lock
    /// the caller holds: in the group writer on PostgreSQL held back with the other reads of a group's revocations (one round trip for
    /// all of them), read by <see cref="BlockAsync"/> after the caller's own change. The writer runs the read again when an earlier
    /// change in its round trip had the same key (see <see cref="GroupCommitWriter.WriteAsync{TFirst, T}"/>'s learnt keys).</summary>
    internal static async Task<KeyState> ReadOfCertificateAsync(CertPortalDbContext db, string serial, DateTimeOffset now, CancellationToken ct) =>
        new(await DirectSql.FindBlockedKeyOfLaterAsync(db, serial, ct), await DirectSql.KeyCertificatesOfLaterAsync(db, serial, now, ct));

    /// <summary>The SubjectPublicKeyInfo in a PEM public key, certificate, CSR or unencrypted private key,
    /// re-encoded by .NET so it hashes as issuance does (<see cref="SubscriberKey.SpkiHash(PublicKey)"/>).</summary>
    public static Outcome<(string SpkiSha256, string KeyAlgorithm)> ReadPublicKey(string? pem)
    {
        const string expected = "pem must hold one PEM block: PUBLIC KEY, CERTIFICATE, CERTIFICATE REQUEST, PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY.";
        if (string.IsNullOrWhiteSpace(pem)) return Failure.BadRequest(expected);
        if (pem.Length > 64 * 1024) return Failure.BadRequest("pem is larger than 64 KiB.");
        if (!PemEncoding.TryFind(pem, out var fields)) return Failure.Unprocessable("Unreadable key.", expected);
        var label = pem[fields.Label];
        var der = new byte[fields.DecodedDataLength];
        if (!Convert.TryFromBase64Chars(pem.AsSpan()[fields.Base64Data], der, out _)) return Failure.Unprocessable("Unreadable key.", expected);
        try
        {
            using AsymmetricAlgorithm? key = label switch
            {
                "PUBLIC KEY" => FromPublicKey(PublicKey.CreateFromSubjectPublicKeyInfo(der, out _)),
                "CERTIFICATE" => FromCertificate(der),
                "CERTIFICATE REQUEST" => FromPublicKey(CertificateRequest.LoadSigningRequest(der, HashAlgorithmName.SHA256, out _,
                    CertificateRequestLoadOptions.SkipSignatureValidation).PublicKey),
                "PRIVATE KEY" => FromPkcs8(der),
                "RSA PRIVATE KEY" => Import(RSA.Create(), k => k.ImportRSAPrivateKey(der, out _)),
                "EC PRIVATE KEY" => Import(ECDsa.Create(), k => k.ImportECPrivateKey(der, out _)),
                "ENCRYPTED PRIVATE KEY" => throw new NotSupportedException("encrypted"),
                _ => null,
            };
            if (key is null) return Failure.Unprocessable("Unsupported PEM block.", expected);
            var spki = key.ExportSubjectPublicKeyInfo();
            var algorithm = key switch
            {
                RSA rsa => $"RSA-{rsa.KeySize}",
                ECDsa ec => ec.KeySize switch { 256 => "EC-P256", 384 => "EC-P384", 521 => "EC-P521", var n => $"EC-{n}" },
                _ => "unknown",
            };
            return (SubscriberKey.SpkiHash(spki), algorithm);
        }
        catch (NotSupportedException) when (label == "ENCRYPTED PRIVATE KEY")
        {
            return Failure.Unprocessable("Encrypted private key.", "Send the public key, the certificate or the unencrypted key; CertPortal cannot open an encrypted one.");
        }
        catch (Exception e) when (e is CryptographicException or AsnContentException or NotSupportedException or ArgumentException)
        {
            return Failure.Unprocessable("Unreadable key.", $"The {label} block could not be read as an RSA or EC key.");
        }
    }

    /// <summary>Fills SpkiSha256 of certificates recorded before it existed (once, at start; idempotent, so
    /// several nodes starting together only repeat each other's work).</summary>
    public static async Task BackfillSpkiHashesAsync(CertPortalDbContext db, CancellationToken ct = default)
    {
        while (true)
        {
            var batch = await db.Certificates.Where(c => c.SpkiSha256 == null).OrderBy(c => c.SerialNumber).Take(500).ToListAsync(ct);
            if (batch.Count == 0) return;
            foreach (var c in batch)
            {
                using var cert = X509CertificateLoader.LoadCertificate(c.Der);
                c.SpkiSha256 = SubscriberKey.SpkiHash(cert.PublicKey);
            }
            await db.SaveChangesAsync(ct);
            db.ChangeTracker.Clear();
        }
    }

    private static AsymmetricAlgorithm? FromCertificate(byte[] der)
    {
        using var cert = X509CertificateLoader.LoadCertificate(der);
        return FromPublicKey(cert.PublicKey);
    }

    private static AsymmetricAlgorithm? FromPublicKey(PublicKey key) => key.Oid.Value switch
    {
        Oids.RsaEncryption => key.GetRSAPublicKey(),
        Oids.EcPublicKey => key.GetECDsaPublicKey(),
        _ => null,
    };

    private static AsymmetricAlgorithm FromPkcs8(byte[] der)
    {
        var info = new AsnReader(der, AsnEncodingRules.DER).ReadSequence();
        info.ReadInteger();
        var algorithm = info.ReadSequence().ReadObjectIdentifier();
        return algorithm switch
        {
            Oids.RsaEncryption => Import(RSA.Create(), k => k.ImportPkcs8PrivateKey(der, out _)),
            Oids.EcPublicKey => Import(ECDsa.Create(), k => k.ImportPkcs8PrivateKey(der, out _)),
            _ => throw new NotSupportedException(algorithm),
        };
    }

    private static T Import<T>(T key, Action<T> import) where T : AsymmetricAlgorithm
    {
        try
        {
            import(key);
            return key;
        }
        catch
        {
            key.Dispose();
            throw;
        }
    }
}
