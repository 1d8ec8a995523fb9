using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Tests.Infrastructure;

/// <summary>A subscriber's key pair as the person's own software would make it: by default with
/// `openssl req` (the oracle tests want keys and CSRs from real tools), or in-process for speed.</summary>
public sealed class SubscriberKeyPair
{
    private SubscriberKeyPair(string algorithm, string privateKeyPem) { Algorithm = algorithm; PrivateKeyPem = privateKeyPem; }

    public string Algorithm { get; }
    /// <summary>PKCS#8 PEM, unencrypted (test material only).</summary>
    public string PrivateKeyPem { get; }

    public static SubscriberKeyPair Generate(string algorithm)
    {
        AsymmetricAlgorithm key = algorithm switch
        {
            "RSA-2048" => RSA.Create(2048),
            "RSA-3072" => RSA.Create(3072),
            "RSA-4096" => RSA.Create(4096),
            "RSA-1024" => RSA.Create(1024),
            "EC-P256" => ECDsa.Create(ECCurve.NamedCurves.nistP256),
            "EC-P384" => ECDsa.Create(ECCurve.NamedCurves.nistP384),
            "EC-P521" => ECDsa.Create(ECCurve.NamedCurves.nistP521),
            _ => throw new ArgumentOutOfRangeException(nameof(algorithm)),
        };
        using (key) return new SubscriberKeyPair(algorithm, key.ExportPkcs8PrivateKeyPem());
    }

    /// <summary>Key and CSR made by `openssl req`: what a person following a how-to would do.</summary>
    public static (SubscriberKeyPair Key, string CsrPem) GenerateWithOpenSsl(string algorithm, string subject)
    {
        using var dir = new ToolDir("openssl-req");
        var newkey = algorithm switch
        {
            "RSA-2048" => new[] { "-newkey", "rsa:2048" },
            "RSA-3072" => ["-newkey", "rsa:3072"],
            "EC-P256" => ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "EC-P384" => ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
            _ => throw new ArgumentOutOfRangeException(nameof(algorithm)),
        };
        Tool.Run("openssl", ["req", "-new", .. newkey, "-nodes", "-keyout", dir.File("key.pem"), "-subj", subject, "-out", dir.File("req.csr")]).EnsureSuccess();
        return (new SubscriberKeyPair(algorithm, File.ReadAllText(dir.File("key.pem"))), File.ReadAllText(dir.File("req.csr")));
    }

    public AsymmetricAlgorithm Load()
    {
        AsymmetricAlgorithm key = Algorithm.StartsWith("RSA", StringComparison.Ordinal) ? RSA.Create() : ECDsa.Create();
        key.ImportFromPem(PrivateKeyPem);
        return key;
    }

    public string CreateCsrPem(string email, string? subject = null, Action<CertificateRequest>? customize = null)
    {
        using var key = Load();
        var dn = new X500DistinguishedName(subject ?? $"CN={email}");
        var req = key is RSA rsa ? new CertificateRequest(dn, rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)
            : new CertificateRequest(dn, (ECDsa)key, HashAlgorithmName.SHA256);
        customize?.Invoke(req);
        return req.CreateSigningRequestPem();
    }

    public X509Certificate2 WithCertificate(string certificatePem)
    {
        using var cert = X509Certificate2.CreateFromPem(certificatePem);
        if (Algorithm.StartsWith("RSA", StringComparison.Ordinal))
        {
            using var rsa = RSA.Create();
            rsa.ImportFromPem(PrivateKeyPem);
            return cert.CopyWithPrivateKey(rsa);
        }
        // .NET treats an EC certificate with keyAgreement but no digitalSignature (our encryption
        // profile) as an ECDH key, not an ECDSA one.
        using var ecdsaPublic = cert.GetECDsaPublicKey();
        if (ecdsaPublic is not null)
        {
            using var ecdsa = ECDsa.Create();
            ecdsa.ImportFromPem(PrivateKeyPem);
            return cert.CopyWithPrivateKey(ecdsa);
        }
        using var ecdh = ECDiffieHellman.Create();
        ecdh.ImportFromPem(PrivateKeyPem);
        return cert.CopyWithPrivateKey(ecdh);
    }
}
