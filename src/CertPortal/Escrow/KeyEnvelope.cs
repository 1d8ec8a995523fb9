using System.Security.Cryptography;

namespace CertPortal.Escrow;

/// <summary>
/// Seals an escrowed private key (PKCS#8, RFC 5208/5958) with AES-256-GCM (NIST SP 800-38D)
/// under a fresh random data key. The data key is then split with <see cref="ShamirSecretSharing"/>
/// and never stored by the server.
/// </summary>
/// <remarks>
/// Envelope format, version 1 (all lengths fixed except the ciphertext):
/// <code>
/// offset  size  field
///  0       1    version = 0x01
///  1      12    nonce (random, SP 800-38D §8.2.2)
/// 13      16    tag (128-bit, SP 800-38D §5.2.1.2)
/// 29       n    ciphertext (n = PKCS#8 length)
/// </code>
/// The associated data is <see cref="KeyEnvelopeBinding"/> (certificate serial and SHA-256)
/// including the version byte, so the header is authenticated too.
/// A random nonce is safe here because every data key encrypts exactly one message.
/// </remarks>
public static class KeyEnvelope
{
    public const byte FormatVersion = 0x01;
    public const int DataKeySize = 32;
    public const int NonceSize = 12;
    public const int TagSize = 16;
    public const int HeaderSize = 1 + NonceSize + TagSize;

    /// <summary>Encrypts <paramref name="pkcs8PrivateKey"/> under a new data key. Dispose the result to wipe the data key.</summary>
    public static SealedKeyEnvelope Seal(ReadOnlySpan<byte> pkcs8PrivateKey, KeyEnvelopeBinding binding)
    {
        ArgumentNullException.ThrowIfNull(binding);
        if (pkcs8PrivateKey.IsEmpty)
            throw new ArgumentException("The private key must not be empty.", nameof(pkcs8PrivateKey));

        byte[] dataKey = RandomNumberGenerator.GetBytes(DataKeySize);
        byte[] envelope = new byte[HeaderSize + pkcs8PrivateKey.Length];
        envelope[0] = FormatVersion;
        Span<byte> nonce = envelope.AsSpan(1, NonceSize);
        Span<byte> tag = envelope.AsSpan(1 + NonceSize, TagSize);
        Span<byte> ciphertext = envelope.AsSpan(HeaderSize);
        RandomNumberGenerator.Fill(nonce);

        using (var gcm = new AesGcm(dataKey, TagSize))
            gcm.Encrypt(nonce, pkcs8PrivateKey, ciphertext, tag, binding.ToAssociatedData(FormatVersion));

        return new SealedKeyEnvelope(envelope, dataKey);
    }

    /// <summary>Decrypts an envelope. The caller owns (and should zero) the returned PKCS#8 bytes.</summary>
    /// <exception cref="EscrowIntegrityException">Wrong data key, wrong binding, unknown version, truncated or modified envelope.</exception>
    public static byte[] Open(ReadOnlySpan<byte> envelope, ReadOnlySpan<byte> dataKey, KeyEnvelopeBinding binding)
    {
        ArgumentNullException.ThrowIfNull(binding);
        if (dataKey.Length != DataKeySize)
            throw new ArgumentException("The data key must be 32 bytes (AES-256).", nameof(dataKey));
        if (envelope.Length <= HeaderSize)
            throw new EscrowIntegrityException("The key envelope is truncated.");
        if (envelope[0] != FormatVersion)
            throw new EscrowIntegrityException("The key envelope has an unsupported format version.");

        var nonce = envelope.Slice(1, NonceSize);
        var tag = envelope.Slice(1 + NonceSize, TagSize);
        var ciphertext = envelope[HeaderSize..];
        byte[] plaintext = new byte[ciphertext.Length];
        try
        {
            using var gcm = new AesGcm(dataKey, TagSize);
            gcm.Decrypt(nonce, ciphertext, tag, plaintext, binding.ToAssociatedData(FormatVersion));
            return plaintext;
        }
        catch (AuthenticationTagMismatchException ex)
        {
            // AesGcm already wiped the output, but do not rely on it.
            CryptographicOperations.ZeroMemory(plaintext);
            throw new EscrowIntegrityException("The key envelope failed authentication (wrong key, wrong certificate or modified data).", ex);
        }
    }
}

/// <summary>Result of <see cref="KeyEnvelope.Seal"/>: the envelope to store and the data key to split. Dispose wipes the data key.</summary>
public sealed class SealedKeyEnvelope : IDisposable
{
    private readonly byte[] _dataKey;

    internal SealedKeyEnvelope(byte[] envelope, byte[] dataKey)
    {
        Envelope = envelope;
        _dataKey = dataKey;
    }

    /// <summary>Versioned envelope bytes (see <see cref="KeyEnvelope"/>); safe to store.</summary>
    public byte[] Envelope { get; }

    /// <summary>The AES-256 data key. Split it into shares, then dispose this object; never store or log it.</summary>
    public ReadOnlySpan<byte> DataKey => _dataKey;

    public void Dispose() => CryptographicOperations.ZeroMemory(_dataKey);
}
