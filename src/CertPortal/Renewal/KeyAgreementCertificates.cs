using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;

namespace CertPortal.Renewal;

/// <summary>An encryption ID's EC certificate allows keyAgreement only (RFC 5480 §3), and .NET then takes its key for ECDH:
/// <c>GetECDsaPublicKey</c> gives nothing, so <see cref="System.Security.Cryptography.Pkcs.SignerInfo.CheckSignature(X509Certificate2Collection, bool)"/>
/// refuses every signature made with that key. The holder of such an ID proves its key for a renewal by signing with it as
/// every other holder does (as a holder of an RSA encryption ID, whose keyEncipherment .NET does not look at, always could), so
/// the check runs against a stand-in: the same public key, issuer, serial number and subject key identifier, and no keyUsage.</summary>
internal static class KeyAgreementCertificates
{
    public static bool IsKeyAgreementOnly(X509Certificate2 certificate)
    {
        if (certificate.PublicKey.Oid.Value != Oids.EcPublicKey) return false;
        using var ecdsa = certificate.GetECDsaPublicKey();
        return ecdsa is null;
    }

    /// <summary>For a signature check with <c>verifySignatureOnly</c> only: the stand-in's own signature, by a throwaway key, is never
    /// looked at, and nothing but the names a signer is found by and the key its signature is checked with is taken over.</summary>
    public static X509Certificate2 StandInForSignatureCheck(X509Certificate2 certificate)
    {
        var request = new CertificateRequest(certificate.SubjectName, certificate.PublicKey, HashAlgorithmName.SHA256);
        foreach (var identifier in certificate.Extensions.OfType<X509SubjectKeyIdentifierExtension>()) request.CertificateExtensions.Add(identifier);
        using var throwaway = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return request.Create(certificate.IssuerName, X509SignatureGenerator.CreateForECDsa(throwaway), certificate.NotBefore, certificate.NotAfter,
            certificate.SerialNumberBytes.Span);
    }
}
