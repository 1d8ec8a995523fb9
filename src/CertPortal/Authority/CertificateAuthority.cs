using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Authority;

/// <summary>A loaded CA: its certificate and the private key that signs for it. Lives for the process.</summary>
public sealed class CertificateAuthority : IDisposable
{
    public const string RootName = "root";
    public const string IssuingName = "issuing";

    private readonly AsymmetricAlgorithm _key;

    public CertificateAuthority(string name, X509Certificate2 certificate, AsymmetricAlgorithm key)
    {
        Name = name;
        _key = key;
        Certificate = key switch
        {
            RSA rsa => certificate.CopyWithPrivateKey(rsa),
            ECDsa ec => certificate.CopyWithPrivateKey(ec),
            _ => throw new NotSupportedException("CA keys are RSA or ECDSA."),
        };
        SignatureGenerator = key switch
        {
            // PKCS#1 v1.5: RSA-PSS signatures are still not understood by every S/MIME client.
            RSA rsa => X509SignatureGenerator.CreateForRSA(rsa, RSASignaturePadding.Pkcs1),
            ECDsa ec => X509SignatureGenerator.CreateForECDsa(ec),
            _ => throw new NotSupportedException(),
        };
        SubjectKeyIdentifier = certificate.Extensions.OfType<X509SubjectKeyIdentifierExtension>().Single().SubjectKeyIdentifierBytes.ToArray();
    }

    public string Name { get; }

    /// <summary>The CA certificate, with its private key attached.</summary>
    public X509Certificate2 Certificate { get; }

    public X509SignatureGenerator SignatureGenerator { get; }

    public byte[] SubjectKeyIdentifier { get; }

    /// <summary>SHA-256 for every key size: SHA-384/512 buy nothing here and older clients know SHA-256 best.</summary>
    public HashAlgorithmName HashAlgorithm => HashAlgorithmName.SHA256;

    public RSASignaturePadding? RsaPadding => _key is RSA ? RSASignaturePadding.Pkcs1 : null;

    /// <summary>Signs a SHA-256 digest the caller computed, in the form <see cref="SignatureGenerator"/> gives (PKCS#1
    /// v1.5; ECDSA as a DER SEQUENCE): for data hashed piece by piece rather than held in one array, such as a CRL of a
    /// million entries (46 MB).</summary>
    public byte[] SignSha256Hash(ReadOnlySpan<byte> hash) => _key switch
    {
        RSA rsa => rsa.SignHash(hash, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1),
        ECDsa ec => ec.SignHash(hash, DSASignatureFormat.Rfc3279DerSequence),
        _ => throw new NotSupportedException("CA keys are RSA or ECDSA."),
    };

    public void Dispose()
    {
        Certificate.Dispose();
        _key.Dispose();
    }
}

/// <summary>The root and issuing CA of this installation.</summary>
public sealed class CaHierarchy(CertificateAuthority root, CertificateAuthority issuing, CaUrls urls) : IDisposable
{
    public CertificateAuthority Root { get; } = root;
    public CertificateAuthority Issuing { get; } = issuing;
    public CaUrls Urls { get; } = urls;

    public CertificateAuthority this[string name] => name switch
    {
        CertificateAuthority.RootName => Root,
        CertificateAuthority.IssuingName => Issuing,
        _ => throw new ArgumentOutOfRangeException(nameof(name)),
    };

    /// <summary>Issuing CA first, then the root: the order S/MIME clients expect in a chain file. Made once: every
    /// enrollment's answer carries it.</summary>
    public string ChainPem { get; } = issuing.Certificate.ExportCertificatePem() + "\n" + root.Certificate.ExportCertificatePem() + "\n";

    public void Dispose()
    {
        Root.Dispose();
        Issuing.Dispose();
    }
}
