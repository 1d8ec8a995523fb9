using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Escrow;

/// <summary>Outcome of <see cref="AgentCertificateValidator.Validate"/>; <see cref="Error"/> is a message fit for the admin UI.</summary>
public sealed record AgentCertificateValidationResult(bool IsValid, string? Error)
{
    public static AgentCertificateValidationResult Valid { get; } = new(true, null);

    public static AgentCertificateValidationResult Invalid(string error) => new(false, error);
}

/// <summary>
/// Checks that a key recovery agent certificate can receive CMS EnvelopedData shares:
/// RSA (rsaEncryption) of at least 2048 bits, or EC on P-256/P-384; inside its validity period;
/// and, when a keyUsage extension is present, it allows keyEncipherment (RSA key transport,
/// RFC 5652 §6.2.1 / RFC 8551 §2.4) or keyAgreement (ECDH, RFC 5753 §3 / RFC 5480 §3).
/// Chain building is out of scope: agent certificates are registered explicitly by an administrator.
/// </summary>
public sealed class AgentCertificateValidator
{
    public const int MinRsaKeySizeBits = 2048;

    internal const string RsaEncryptionOid = "1.2.840.113549.1.1.1";  // RFC 8017 Appendix C
    internal const string EcPublicKeyOid = "1.2.840.10045.2.1";       // RFC 5480 §2.1.1
    internal const string P256Oid = "1.2.840.10045.3.1.7";            // secp256r1, RFC 5480 §2.1.1.1
    internal const string P384Oid = "1.3.132.0.34";                   // secp384r1

    private readonly TimeProvider _time;

    public AgentCertificateValidator(TimeProvider? timeProvider = null)
    {
        _time = timeProvider ?? TimeProvider.System;
    }

    public AgentCertificateValidationResult Validate(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        try
        {
            return ValidateReadable(certificate);
        }
        catch (CryptographicException)
        {
            // An extension is decoded only when read (keyUsage whose value is not a BIT STRING): the admin's input, not our bug.
            return AgentCertificateValidationResult.Invalid("The agent certificate's keyUsage or key cannot be decoded.");
        }
    }

    private AgentCertificateValidationResult ValidateReadable(X509Certificate2 certificate)
    {

        var now = _time.GetUtcNow();
        if (now < certificate.NotBefore.ToUniversalTime())
            return AgentCertificateValidationResult.Invalid($"The agent certificate is not valid before {certificate.NotBefore.ToUniversalTime():u}.");
        if (now > certificate.NotAfter.ToUniversalTime())
            return AgentCertificateValidationResult.Invalid($"The agent certificate expired on {certificate.NotAfter.ToUniversalTime():u}.");

        var keyUsage = certificate.Extensions.OfType<X509KeyUsageExtension>().FirstOrDefault();
        string algorithm = certificate.PublicKey.Oid.Value ?? "";

        if (algorithm == RsaEncryptionOid)
        {
            using RSA? rsa = ReadKey(certificate.GetRSAPublicKey);
            if (rsa is null)
                return AgentCertificateValidationResult.Invalid("The agent certificate's RSA public key cannot be read.");
            if (rsa.KeySize < MinRsaKeySizeBits)
                return AgentCertificateValidationResult.Invalid($"The agent's RSA key has {rsa.KeySize} bits; at least {MinRsaKeySizeBits} are required.");
            if (keyUsage is not null && !keyUsage.KeyUsages.HasFlag(X509KeyUsageFlags.KeyEncipherment))
                return AgentCertificateValidationResult.Invalid("The agent certificate's keyUsage does not allow keyEncipherment, which RSA key transport needs.");
            return AgentCertificateValidationResult.Valid;
        }

        if (algorithm == EcPublicKeyOid)
        {
            string? curve = ReadNamedCurve(certificate.PublicKey.EncodedParameters?.RawData);
            if (curve is not (P256Oid or P384Oid))
                return AgentCertificateValidationResult.Invalid("The agent's EC key must be on the named curve P-256 or P-384.");
            // The point is checked here, once, as the share encryption will import it (on the curve, not the point at infinity):
            // a key that cannot be imported would otherwise fail every server-key enrollment after it was registered.
            using (var ecdh = ReadKey(certificate.GetECDiffieHellmanPublicKey))
            {
                if (ecdh is null)
                    return AgentCertificateValidationResult.Invalid("The agent certificate's EC public key is not a point on its curve.");
            }
            if (keyUsage is not null && !keyUsage.KeyUsages.HasFlag(X509KeyUsageFlags.KeyAgreement))
                return AgentCertificateValidationResult.Invalid("The agent certificate's keyUsage does not allow keyAgreement, which ECDH needs.");
            return AgentCertificateValidationResult.Valid;
        }

        return AgentCertificateValidationResult.Invalid($"Unsupported agent key algorithm {algorithm}; use RSA (>= 2048 bits) or EC P-256/P-384.");
    }

    /// <summary>The public key as this service would encode it (SubjectPublicKeyInfo of the imported key), so that one key compares
    /// equal however a certificate spelt it: RSA with or without its NULL parameters, an EC point compressed or not. Null when
    /// the key cannot be read.</summary>
    public static byte[]? CanonicalPublicKey(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        using AsymmetricAlgorithm? key = certificate.PublicKey.Oid.Value switch
        {
            RsaEncryptionOid => ReadKey(certificate.GetRSAPublicKey),
            EcPublicKeyOid => ReadKey(certificate.GetECDiffieHellmanPublicKey),
            _ => null,
        };
        return key?.ExportSubjectPublicKeyInfo();
    }

    /// <summary>A certificate's key, or null when its encoding cannot be imported (the certificate itself parsed: its key bytes
    /// are read only now).</summary>
    private static T? ReadKey<T>(Func<T?> read) where T : AsymmetricAlgorithm
    {
        try
        {
            return read();
        }
        catch (CryptographicException)
        {
            return null;
        }
    }

    /// <summary>ECParameters ::= CHOICE { namedCurve OBJECT IDENTIFIER, ... } (RFC 5480 §2.1.1); explicit curves are rejected.</summary>
    internal static string? ReadNamedCurve(byte[]? encodedParameters)
    {
        if (encodedParameters is null)
            return null;
        try
        {
            var reader = new AsnReader(encodedParameters, AsnEncodingRules.DER);
            string oid = reader.ReadObjectIdentifier();
            return reader.HasData ? null : oid;
        }
        catch (AsnContentException)
        {
            return null;
        }
    }
}

/// <summary>The agent certificate cannot be used as a CMS recipient; the message says why.</summary>
public sealed class InvalidAgentCertificateException : Exception
{
    public InvalidAgentCertificateException(string message) : base(message) { }
}
