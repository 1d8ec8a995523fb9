using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace CertPortal.Escrow;

/// <summary>
/// The key pair of one recovery request that agents seal their shares to (<see cref="SealedShare"/>). The public half goes
/// out as a self-signed certificate (so <c>openssl cms -encrypt</c> can use it too) with the share download; the private half
/// is kept sealed under the <see cref="RecoverySessionKey"/>, like submitted shares, and so is shared by every node through
/// the database and never stored in the clear. It is erased when the request completes, is cancelled or expires: a sealed
/// share captured on its way in then opens nowhere.
/// </summary>
/// <remarks>P-256 ECDH: quick to make on the first download, and the key type certportal-kra and OpenSSL already encrypt
/// shares to. The certificate is self-signed and trusted because the agent fetched it over TLS from the service it is
/// approving for: the service opens the share either way, so no CA vouching for the key would add anything.</remarks>
internal static class RecoverySubmissionKey
{
    public static (byte[] CertificateDer, byte[] SealedKey) Create(Guid requestId, DateTimeOffset notBefore, DateTimeOffset notAfter,
        RecoverySessionKey sessionKey)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var subject = new X500DistinguishedNameBuilder();
        subject.AddOrganizationName(SealedShare.SubjectOrganization);
        subject.AddCommonName(requestId.ToString("D"));
        var request = new CertificateRequest(subject.Build(), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyAgreement, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        // Signed by its own key, without attaching it: .NET refuses an ECDSA private key for a keyAgreement-only certificate.
        using var certificate = request.Create(request.SubjectName, X509SignatureGenerator.CreateForECDsa(key), notBefore, notAfter,
            RandomNumberGenerator.GetBytes(16));
        var der = certificate.RawData;
        var pkcs8 = key.ExportPkcs8PrivateKey();
        try
        {
            return (der, sessionKey.Seal(pkcs8, Aad(requestId, der)));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pkcs8);
        }
    }

    /// <summary>The request's private key. The associated data names the request and the certificate, so a sealed key moved to
    /// another request, or a certificate swapped in the database for one whose key someone else holds, does not open.</summary>
    /// <exception cref="EscrowIntegrityException">Altered, moved or foreign.</exception>
    public static ECDiffieHellman Open(Guid requestId, byte[] certificateDer, byte[] sealedKey, RecoverySessionKey sessionKey)
    {
        var pkcs8 = sessionKey.Open(sealedKey, Aad(requestId, certificateDer));
        try
        {
            var key = ECDiffieHellman.Create();
            key.ImportPkcs8PrivateKey(pkcs8, out _);
            return key;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(pkcs8);
        }
    }

    private static byte[] Aad(Guid requestId, byte[] certificateDer) =>
        [.. Encoding.ASCII.GetBytes($"certportal/recovery-submission-key/{requestId:N}/"), .. SHA256.HashData(certificateDer)];
}
