using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Authority;

/// <summary>Creates the root and issuing CA, and converts them to and from their stored form: the
/// certificate PEM followed by the private key as encrypted PKCS#8 (PBES2, AES-256-CBC, PBKDF2-SHA256).
/// Where they are stored (the database, shared by every node) is Cluster/SharedCa's business; this class
/// still reads the <c>DataDirectory/ca</c> files of installations from before that, to import them once.</summary>
public sealed class CaKeyStore(CertPortalOptions options, TimeProvider time)
{
    private static readonly PbeParameters KeyEncryption = new(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, 600_000);

    public string LegacyDirectory => Path.Combine(options.ResolvedDataDirectory, "ca");

    /// <summary>Root first, then the issuing CA signed by it.</summary>
    public (CertificateAuthority Root, CertificateAuthority Issuing) Create(CaUrls urls)
    {
        var root = CreateRoot();
        return (root, CreateIssuing(root, urls));
    }

    public static string Export(CertificateAuthority ca, string passphrase)
    {
        var key = ca.Certificate.GetRSAPrivateKey() as AsymmetricAlgorithm ?? ca.Certificate.GetECDsaPrivateKey()!;
        return ca.Certificate.ExportCertificatePem() + "\n" + key.ExportEncryptedPkcs8PrivateKeyPem(passphrase, KeyEncryption) + "\n";
    }

    /// <exception cref="CryptographicException">The passphrase does not open the key.</exception>
    public static CertificateAuthority Import(string name, string pem, string passphrase)
    {
        var cert = X509Certificate2.CreateFromPem(pem);
        AsymmetricAlgorithm key = cert.GetKeyAlgorithm() == Oids.RsaEncryption ? RSA.Create() : ECDsa.Create();
        try
        {
            key.ImportFromEncryptedPem(pem, passphrase);
        }
        catch
        {
            key.Dispose();
            throw;
        }
        return new CertificateAuthority(name, cert, key);
    }

    /// <summary>The CA a single-node installation kept in <c>DataDirectory/ca</c> (name.crt beside name.key), or
    /// null when that node never had one.</summary>
    public (CertificateAuthority Root, CertificateAuthority Issuing)? TryLoadLegacy(string passphrase)
    {
        var root = TryLoadLegacy(CertificateAuthority.RootName, passphrase);
        var issuing = TryLoadLegacy(CertificateAuthority.IssuingName, passphrase);
        if (root is null && issuing is not null)
            throw new InvalidOperationException($"The issuing CA exists in {LegacyDirectory} but the root CA does not; restore root.crt and root.key from backup.");
        if (root is null) return null;
        if (issuing is null)
            throw new InvalidOperationException($"The root CA exists in {LegacyDirectory} but the issuing CA does not; restore issuing.crt and issuing.key from backup.");
        return (root, issuing);
    }

    /// <summary>The certificate alone (no passphrase needed): enough to tell whether this node's CA is the database's.</summary>
    public X509Certificate2? LegacyCertificate(string name)
    {
        var certPath = Path.Combine(LegacyDirectory, name + ".crt");
        return File.Exists(certPath) ? X509Certificate2.CreateFromPem(File.ReadAllText(certPath)) : null;
    }

    private CertificateAuthority? TryLoadLegacy(string name, string passphrase)
    {
        var certPath = Path.Combine(LegacyDirectory, name + ".crt");
        var keyPath = Path.Combine(LegacyDirectory, name + ".key");
        if (!File.Exists(certPath) || !File.Exists(keyPath)) return null;
        try
        {
            return Import(name, File.ReadAllText(certPath) + "\n" + File.ReadAllText(keyPath), passphrase);
        }
        catch (CryptographicException e)
        {
            throw new InvalidOperationException($"Cannot decrypt {keyPath}: wrong CertPortal:Ca:KeyPassphrase? ({e.Message})", e);
        }
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
        req.CertificateExtensions.Add(new X509AuthorityInformationAccessExtension([urls.Ocsp], [urls.RootCert], false));
        req.CertificateExtensions.Add(CertificatePolicies.Build(options.Issuance.EffectivePolicyOids));
        var now = time.GetUtcNow();
        var notAfter = now.AddYears(options.Ca.IssuingValidityYears);
        if (notAfter > root.Certificate.NotAfter) notAfter = root.Certificate.NotAfter;
        using var cert = req.Create(root.Certificate.SubjectName, root.SignatureGenerator, now.AddMinutes(-5), notAfter, SerialNumber.New(now));
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

    internal static CertificateRequest NewRequest(X500DistinguishedName subject, AsymmetricAlgorithm key) => key switch
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
