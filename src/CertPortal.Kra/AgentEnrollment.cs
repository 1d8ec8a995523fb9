using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Kra;

/// <summary>The agent's new key pair: the password-encrypted private key and the self-signed certificate, both PEM.</summary>
public sealed record AgentCredentials(string EncryptedPrivateKeyPem, string CertificatePem, string Sha256Fingerprint);

/// <summary>
/// Creates a key recovery agent's key pair and self-signed certificate. The certificate is only a
/// public-key carrier that the server's administrator registers (and checks out of band by fingerprint);
/// trust does not come from its signature.
/// </summary>
public static class AgentEnrollment
{
    // OWASP 2023 guidance for PBKDF2-HMAC-SHA256; the key file may be copied off the machine.
    public const int DefaultPbkdf2Iterations = 600_000;

    public const int MinPasswordLength = 8;

    /// <summary>A hundred years: past it the end date soon leaves what a certificate can hold (year 9999), which threw.</summary>
    public const int MaxValidityDays = 36_500;

    public static AgentCredentials Create(string agentName, AgentAlgorithm algorithm, string password,
        int validityDays = 1095, int pbkdf2Iterations = DefaultPbkdf2Iterations, TimeProvider? time = null)
    {
        if (string.IsNullOrWhiteSpace(agentName))
            throw new KraUsageException("The agent name must not be empty.");
        if (password.Length < MinPasswordLength)
            throw new KraException($"The key password must have at least {MinPasswordLength} characters.");
        if (validityDays is < 1 or > MaxValidityDays)
            throw new KraUsageException($"The validity must be between 1 and {MaxValidityDays} days.");

        var nameBuilder = new X500DistinguishedNameBuilder();
        nameBuilder.AddOrganizationalUnitName("Key Recovery Agent");
        nameBuilder.AddCommonName(agentName);
        var subject = nameBuilder.Build();

        using AsymmetricAlgorithm key = CreateKey(algorithm);
        CertificateRequest request = key switch
        {
            RSA rsa => new CertificateRequest(subject, rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1),
            ECDsa ec => new CertificateRequest(subject, ec, algorithm == AgentAlgorithm.EcP384 ? HashAlgorithmName.SHA384 : HashAlgorithmName.SHA256),
            _ => throw new InvalidOperationException("Unexpected key type."),
        };

        // RFC 8551 §4.4.2 / RFC 5480 §3: keyEncipherment for RSA key transport, keyAgreement for ECDH;
        // digitalSignature so the self-signature is consistent with the key's usage.
        var usage = key is RSA
            ? X509KeyUsageFlags.KeyEncipherment | X509KeyUsageFlags.DigitalSignature
            : X509KeyUsageFlags.KeyAgreement | X509KeyUsageFlags.DigitalSignature;
        request.CertificateExtensions.Add(new X509KeyUsageExtension(usage, critical: true));
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));

        var now = (time ?? TimeProvider.System).GetUtcNow();
        // CreateSelfSigned picks a random positive serial (RFC 5280 §4.1.2.2).
        using var certificate = request.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(validityDays));

        var pbe = new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, pbkdf2Iterations);
        string keyPem = key.ExportEncryptedPkcs8PrivateKeyPem(password, pbe);
        string certPem = certificate.ExportCertificatePem();
        string fingerprint = Convert.ToHexString(SHA256.HashData(certificate.RawData));
        return new AgentCredentials(keyPem, certPem, fingerprint);
    }

    private static AsymmetricAlgorithm CreateKey(AgentAlgorithm algorithm) => algorithm switch
    {
        AgentAlgorithm.Rsa3072 => RSA.Create(3072),
        AgentAlgorithm.Rsa4096 => RSA.Create(4096),
        // An ECDsa key object so it can self-sign; the same id-ecPublicKey key is used for ECDH (RFC 5480 §2.1.1).
        AgentAlgorithm.EcP256 => ECDsa.Create(ECCurve.NamedCurves.nistP256),
        AgentAlgorithm.EcP384 => ECDsa.Create(ECCurve.NamedCurves.nistP384),
        _ => throw new ArgumentOutOfRangeException(nameof(algorithm)),
    };
}
