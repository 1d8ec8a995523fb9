using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using CertPortal.Authority;
using CertPortal.Cluster;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Ocsp;

/// <summary>A delegated OCSP responder: its certificate with key, and the key hash that names it in responses.</summary>
public sealed class OcspSigner(CertificateAuthority key, DateTimeOffset storedAt)
{
    public CertificateAuthority Key { get; } = key;
    public byte[] KeyHash { get; } = OcspResponseEncoder.KeyHash(key.Certificate);
    /// <summary>The certificate's DER, which ends every response it signs: one array, shared by the responses kept in
    /// memory (<see cref="OcspAnswer.Certificate"/>). X509Certificate2.RawData would copy it at every call.</summary>
    public byte[] CertificateDer { get; } = key.Certificate.RawData;
    public DateTimeOffset NotAfter { get; } = new(key.Certificate.NotAfter.ToUniversalTime());
    /// <summary>When it was written to the database: a different value there means another node renewed it.</summary>
    public DateTimeOffset StoredAt { get; } = storedAt;
}

/// <summary>The delegated OCSP signing certificates (RFC 6960 4.2.2.2), one per CA: the issuing CA's answers for the
/// certificates it issued, the root's for the issuing CA certificate, so neither CA key signs on every request.
/// Profile: id-kp-OCSPSigning, id-pkix-ocsp-nocheck (relying parties need not check the responder's own revocation,
/// hence the short validity), digitalSignature only, no CRL DP or AIA. Every node must answer with the same certificate,
/// so certificate and key live in the database (SharedSecrets, key sealed with <see cref="KeyEncryptionSecret"/>).
/// A node creates or renews one under a cluster-wide lock; the others load it on their next check.</summary>
public sealed class OcspSigners(CaHierarchy ca, KeyEncryptionSecret kek, CertPortalOptions options, TimeProvider time, ILogger<OcspSigners> logger)
{
    private const string SealedKeyLabel = "CERTPORTAL SEALED PRIVATE KEY";
    private static readonly string[] Authorities = [CertificateAuthority.IssuingName, CertificateAuthority.RootName];
    private readonly ConcurrentDictionary<string, OcspSigner> _current = new();

    /// <summary>The signer for the CA named <paramref name="authority"/>; loaded at start-up.</summary>
    public OcspSigner For(string authority) =>
        _current.TryGetValue(authority, out var s) ? s : throw new InvalidOperationException("The OCSP signers are loaded at start-up; they are not loaded yet.");

    public static string SecretName(string authority) => "ocsp:" + authority;

    /// <summary>Loads each CA's signer from the database, first creating or renewing it (under the lock) when it is
    /// missing or has less than <c>Ocsp:SignerRenewBefore</c> left. Cheap when nothing changed: one query.</summary>
    public async Task RefreshAsync(CertPortalDbContext db, CancellationToken ct)
    {
        var names = Authorities.Select(SecretName).ToList();
        var stored = await db.SharedSecrets.AsNoTracking().Where(s => names.Contains(s.Name))
            .Select(s => new { s.Name, s.CreatedAt }).ToDictionaryAsync(s => s.Name, s => s.CreatedAt, ct);
        foreach (var authority in Authorities)
        {
            var current = _current.GetValueOrDefault(authority);
            if (current is not null && !DueForRenewal(current, authority) && stored.GetValueOrDefault(SecretName(authority)) == current.StoredAt) continue;
            var signer = await LoadAsync(db, authority, ct);
            if (signer is null || DueForRenewal(signer, authority)) signer = await RenewAsync(db, authority, ct);
            // The previous signer is not disposed: a response being signed with it may still be in flight.
            _current[authority] = signer;
        }
    }

    /// <summary>Less than <c>Ocsp:SignerRenewBefore</c> left, and a new signer would outlive this one. In the CA's own
    /// last SignerRenewBefore a signer ends with the CA (<see cref="Create"/> caps it): renewing it then would give the
    /// same notAfter at every check, a new key every minute and every cached response signed again.</summary>
    private bool DueForRenewal(OcspSigner signer, string authority) =>
        signer.NotAfter - time.GetUtcNow() < options.Ocsp.SignerRenewBefore && signer.NotAfter < IssuerNotAfter(authority);

    private DateTimeOffset IssuerNotAfter(string authority) => new(ca[authority].Certificate.NotAfter.ToUniversalTime());

    private async Task<OcspSigner?> LoadAsync(CertPortalDbContext db, string authority, CancellationToken ct)
    {
        var row = await db.SharedSecrets.AsNoTracking().FirstOrDefaultAsync(s => s.Name == SecretName(authority), ct);
        return row is null ? null : Open(authority, row);
    }

    /// <summary>Under the lock, another node may have renewed it meanwhile: then that one is taken.</summary>
    private async Task<OcspSigner> RenewAsync(CertPortalDbContext db, string authority, CancellationToken ct)
    {
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        await db.LockNamedAsync("ocsp-signer:" + authority, ct);
        var row = await db.SharedSecrets.FirstOrDefaultAsync(s => s.Name == SecretName(authority), ct);
        if (row is not null && Open(authority, row) is { } theirs && !DueForRenewal(theirs, authority))
        {
            await tx.RollbackAsync(ct);
            return theirs;
        }
        // Whole seconds: what the database gives back, so StoredAt compares equal to it on every node.
        var now = Revocation.CrlSigner.WholeSeconds(time.GetUtcNow());
        using var key = Create(ca[authority], now);
        var value = Export(key, authority);
        if (row is null) db.SharedSecrets.Add(row = new SharedSecret { Name = SecretName(authority), Value = value, CreatedAt = now });
        else
        {
            row.Value = value;
            row.CreatedAt = now;
        }
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        db.ChangeTracker.Clear();
        logger.LogInformation("New OCSP signing certificate for the {Authority} CA: serial {Serial}, valid until {NotAfter}",
            authority, key.Certificate.SerialNumber, key.Certificate.NotAfter);
        return Open(authority, row);
    }

    private CertificateAuthority Create(CertificateAuthority issuer, DateTimeOffset now)
    {
        // RSA-2048 for every CA: the key lives a month, and gpgsm's dirmngr (2.2) cannot verify an ECDSA-signed OCSP
        // response ("Provided object is too short"), while an RSA responder under an EC CA works with it, OpenSSL and NSS.
        var key = CaKeyStore.NewKey("RSA-2048");
        var name = new X500DistinguishedNameBuilder();
        var issuerCn = issuer.Certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        var cn = issuerCn + " OCSP Responder";
        name.AddCommonName(cn.Length <= 64 ? cn : "OCSP Responder");
        name.AddOrganizationName(options.Ca.OrganizationName);
        var req = CaKeyStore.NewRequest(name.Build(), key);
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(Oids.OcspSigning)], critical: false));
        req.CertificateExtensions.Add(new X509Extension(Oids.OcspNoCheck, [0x05, 0x00], critical: false)); // NULL
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, X509SubjectKeyIdentifierHashAlgorithm.Sha1, false));
        req.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromSubjectKeyIdentifier(issuer.SubjectKeyIdentifier));
        var notBefore = now.AddMinutes(-5);
        var notAfter = now + options.Ocsp.SignerValidity;
        if (notAfter > issuer.Certificate.NotAfter) notAfter = issuer.Certificate.NotAfter;
        using var cert = req.Create(issuer.Certificate.SubjectName, issuer.SignatureGenerator, notBefore, notAfter, SerialNumber.New(now));
        return new CertificateAuthority("ocsp-" + issuer.Name, X509CertificateLoader.LoadCertificate(cert.RawData), key);
    }

    /// <summary>Certificate PEM, then the PKCS#8 key sealed under the CA key passphrase (purpose: this CA's OCSP key).</summary>
    private byte[] Export(CertificateAuthority signer, string authority)
    {
        using var key = signer.Certificate.GetRSAPrivateKey() as AsymmetricAlgorithm ?? signer.Certificate.GetECDsaPrivateKey()!;
        var pkcs8 = key.ExportPkcs8PrivateKey();
        try
        {
            var sealedKey = kek.Seal(pkcs8, SecretName(authority));
            return Encoding.UTF8.GetBytes(signer.Certificate.ExportCertificatePem() + "\n" + new string(PemEncoding.Write(SealedKeyLabel, sealedKey)) + "\n");
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pkcs8);
        }
    }

    private OcspSigner Open(string authority, SharedSecret row)
    {
        var text = Encoding.UTF8.GetString(row.Value);
        var certificate = X509Certificate2.CreateFromPem(text);
        var rest = text.AsSpan();
        byte[]? sealedKey = null;
        while (PemEncoding.TryFind(rest, out var fields))
        {
            if (rest[fields.Label].SequenceEqual(SealedKeyLabel)) sealedKey = Convert.FromBase64String(rest[fields.Base64Data].ToString());
            rest = rest[fields.Location.End..];
        }
        if (sealedKey is null) throw new InvalidOperationException($"The stored OCSP signer of the {authority} CA has no key; delete the SharedSecrets row {SecretName(authority)} to make a new one.");
        var pkcs8 = kek.Open(sealedKey, SecretName(authority));
        AsymmetricAlgorithm key = certificate.GetKeyAlgorithm() == Oids.RsaEncryption ? RSA.Create() : ECDsa.Create();
        try
        {
            key.ImportPkcs8PrivateKey(pkcs8, out _);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pkcs8);
        }
        return new OcspSigner(new CertificateAuthority("ocsp-" + authority, certificate, key), row.CreatedAt);
    }
}
