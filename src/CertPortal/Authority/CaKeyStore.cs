using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Authority;

/// <summary>Creates the root and issuing CA on first start and loads them afterwards. Keys are stored
/// only as encrypted PKCS#8 (PBES2, AES-256-CBC, PBKDF2-SHA256); certificates as PEM beside them.</summary>
public sealed class CaKeyStore(CertPortalOptions options, TimeProvider time, ILogger<CaKeyStore> logger)
{
    private static readonly PbeParameters KeyEncryption = new(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, 600_000);

    private string CaDirectory => Path.Combine(options.ResolvedDataDirectory, "ca");

    public CaHierarchy LoadOrCreate(CaUrls urls)
    {
        Directory.CreateDirectory(CaDirectory);
        var passphrase = SecretFile.ReadOrCreate(options.Ca.KeyPassphrase,
            Path.Combine(options.ResolvedDataDirectory, "ca-key-passphrase"), "CA key passphrase", logger);

        var root = TryLoad(CertificateAuthority.RootName, passphrase);
        var issuing = TryLoad(CertificateAuthority.IssuingName, passphrase);
        if (root is null && issuing is not null)
            throw new InvalidOperationException($"The issuing CA exists in {CaDirectory} but the root CA does not; restore root.crt and root.key from backup.");

        if (root is null)
        {
            root = CreateRoot();
            Save(root, passphrase);
            logger.LogInformation("Created root CA {Subject} ({Algorithm})", root.Certificate.Subject, options.Ca.RootKeyAlgorithm);
        }
        if (issuing is null)
        {
            issuing = CreateIssuing(root, urls);
            Save(issuing, passphrase);
            logger.LogInformation("Created issuing CA {Subject} ({Algorithm})", issuing.Certificate.Subject, options.Ca.IssuingKeyAlgorithm);
        }
        return new CaHierarchy(root, issuing, urls);
    }

    private CertificateAuthority? TryLoad(string name, string passphrase)
    {
        var certPath = Path.Combine(CaDirectory, name + ".crt");
        var keyPath = Path.Combine(CaDirectory, name + ".key");
        if (!File.Exists(certPath) || !File.Exists(keyPath)) return null;

        var cert = X509Certificate2.CreateFromPem(File.ReadAllText(certPath));
        var keyPem = File.ReadAllText(keyPath);
        AsymmetricAlgorithm key = cert.GetKeyAlgorithm() == Oids.RsaEncryption ? RSA.Create() : ECDsa.Create();
        try
        {
            key.ImportFromEncryptedPem(keyPem, passphrase);
        }
        catch (CryptographicException e)
        {
            key.Dispose();
            throw new InvalidOperationException($"Cannot decrypt {keyPath}: wrong CertPortal:Ca:KeyPassphrase? ({e.Message})", e);
        }
        return new CertificateAuthority(name, cert, key);
    }

    private void Save(CertificateAuthority ca, string passphrase)
    {
        // Key first, certificate last: a certificate file is the sign that its CA is complete.
        var key = ca.Certificate.GetRSAPrivateKey() as AsymmetricAlgorithm ?? ca.Certificate.GetECDsaPrivateKey()!;
        SecretFile.WriteAtomically(Path.Combine(CaDirectory, ca.Name + ".key"), key.ExportEncryptedPkcs8PrivateKeyPem(passphrase, KeyEncryption));
        SecretFile.WriteAtomically(Path.Combine(CaDirectory, ca.Name + ".crt"), ca.Certificate.ExportCertificatePem() + "\n");
    }

    private CertificateAuthority CreateRoot()
    {
        var key = NewKey(options.Ca.RootKeyAlgorithm);
        var subject = CaName(options.Ca.RootCommonName);
        var req = NewRequest(subject, key);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        var ski = new X509SubjectKeyIdentifierExtension(req.PublicKey, X509SubjectKeyIdentifierHashAlgorithm.Sha1, false);
        req.CertificateExtensions.Add(ski);
        var now = time.GetUtcNow();
        using var cert = req.CreateSelfSigned(now.AddMinutes(-5), now.AddYears(options.Ca.RootValidityYears));
        return new CertificateAuthority(CertificateAuthority.RootName, X509CertificateLoader.LoadCertificate(cert.RawData), key);
    }

    private CertificateAuthority CreateIssuing(CertificateAuthority root, CaUrls urls)
    {
        var key = NewKey(options.Ca.IssuingKeyAlgorithm);
        var req = NewRequest(CaName(options.Ca.IssuingCommonName), key);
        // pathLen 0: this CA issues only end-entity certificates.
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(
            X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign | X509KeyUsageFlags.DigitalSignature, true));
        // S/MIME BR 7.1.2.2: a subordinate CA's EKU contains emailProtection and not serverAuth.
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(Oids.EmailProtection)], false));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, X509SubjectKeyIdentifierHashAlgorithm.Sha1, false));
        req.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromSubjectKeyIdentifier(root.SubjectKeyIdentifier));
        req.CertificateExtensions.Add(CertificateRevocationListBuilder.BuildCrlDistributionPointExtension([urls.RootCrl], false));
        req.CertificateExtensions.Add(new X509AuthorityInformationAccessExtension(null, [urls.RootCert], false));
        req.CertificateExtensions.Add(CertificatePolicies.Build(options.Issuance.EffectivePolicyOids));
        var now = time.GetUtcNow();
        var notAfter = now.AddYears(options.Ca.IssuingValidityYears);
        if (notAfter > root.Certificate.NotAfter) notAfter = root.Certificate.NotAfter;
        using var cert = req.Create(root.Certificate.SubjectName, root.SignatureGenerator, now.AddMinutes(-5), notAfter, SerialNumber.New());
        return new CertificateAuthority(CertificateAuthority.IssuingName, X509CertificateLoader.LoadCertificate(cert.RawData), key);
    }

    private X500DistinguishedName CaName(string commonName)
    {
        var b = new X500DistinguishedNameBuilder();
        // The builder encodes in reverse order of the calls: this yields O=..., CN=... (most significant first).
        b.AddCommonName(commonName);
        b.AddOrganizationName(options.Ca.OrganizationName);
        return b.Build();
    }

    private static CertificateRequest NewRequest(X500DistinguishedName subject, AsymmetricAlgorithm key) => key switch
    {
        RSA rsa => new CertificateRequest(subject, rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1),
        ECDsa ec => new CertificateRequest(subject, ec, HashAlgorithmName.SHA256),
        _ => throw new NotSupportedException(),
    };

    internal static AsymmetricAlgorithm NewKey(string algorithm) => algorithm switch
    {
        "RSA-2048" => RSA.Create(2048),
        "RSA-3072" => RSA.Create(3072),
        "RSA-4096" => RSA.Create(4096),
        "EC-P256" => ECDsa.Create(ECCurve.NamedCurves.nistP256),
        "EC-P384" => ECDsa.Create(ECCurve.NamedCurves.nistP384),
        _ => throw new ArgumentOutOfRangeException(nameof(algorithm), algorithm, "unknown key algorithm"),
    };
}
