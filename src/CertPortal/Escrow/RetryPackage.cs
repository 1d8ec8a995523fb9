using System.Security.Cryptography;
using System.Text;

namespace CertPortal.Escrow;

/// <summary>Seals the PKCS#12 of a server-generated key for a lost-answer retry. The key is derived from the
/// client's requestId (a random value of at least 128 bits that the server keeps nowhere), so the stored copy
/// opens only for the client that made the request; inside it, the PKCS#12 is still protected by the client's
/// password. AES-256-GCM, bound to what the request spent: the token, or (renewal) the new certificate's serial.</summary>
public static class RetryPackage
{
    public const int MinRequestIdLength = 22; // 128 bits in base64url; a UUID has 36 characters
    public const int MaxRequestIdLength = 128;
    private const byte Version = 1;
    private const int NonceSize = 12;
    private const int TagSize = 16;
    private static readonly byte[] Info = "certportal enrollment retry v1"u8.ToArray();

    public static bool IsValidRequestId(string requestId) =>
        requestId.Length is >= MinRequestIdLength and <= MaxRequestIdLength && requestId.All(c => c is > ' ' and < '\x7f');

    public static byte[] Seal(byte[] pkcs12, string requestId, Guid tokenId) => Seal(pkcs12, requestId, tokenId.ToByteArray());

    public static byte[]? Open(byte[] package, string requestId, Guid tokenId) => Open(package, requestId, tokenId.ToByteArray());

    /// <summary>The binding of a renewal's copy: the serial of the certificate it holds.</summary>
    public static byte[] RenewalBinding(string serial) => Encoding.ASCII.GetBytes("renewal " + serial);

    public static byte[] Seal(byte[] pkcs12, string requestId, byte[] binding)
    {
        var key = DeriveKey(requestId, binding);
        var package = new byte[1 + NonceSize + TagSize + pkcs12.Length];
        package[0] = Version;
        var nonce = package.AsSpan(1, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(key, TagSize);
        aes.Encrypt(nonce, pkcs12, package.AsSpan(1 + NonceSize + TagSize), package.AsSpan(1 + NonceSize, TagSize), binding);
        CryptographicOperations.ZeroMemory(key);
        return package;
    }

    /// <summary>The PKCS#12, or null when the requestId is not the one it was sealed with.</summary>
    public static byte[]? Open(byte[] package, string requestId, byte[] binding)
    {
        if (package.Length < 1 + NonceSize + TagSize || package[0] != Version) return null;
        var key = DeriveKey(requestId, binding);
        var plain = new byte[package.Length - 1 - NonceSize - TagSize];
        try
        {
            using var aes = new AesGcm(key, TagSize);
            aes.Decrypt(package.AsSpan(1, NonceSize), package.AsSpan(1 + NonceSize + TagSize), package.AsSpan(1 + NonceSize, TagSize), plain, binding);
            return plain;
        }
        catch (AuthenticationTagMismatchException)
        {
            return null;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(key);
        }
    }

    private static byte[] DeriveKey(string requestId, byte[] binding) =>
        HKDF.DeriveKey(HashAlgorithmName.SHA256, Encoding.UTF8.GetBytes(requestId), 32, binding, Info);
}
