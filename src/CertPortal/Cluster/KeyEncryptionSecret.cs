using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;

namespace CertPortal.Cluster;

/// <summary>Seals the secrets nodes share through the database (the recovery session key, Data Protection's
/// keys) under a key derived from <c>CertPortal:Ca:KeyPassphrase</c>, the one secret every node is given
/// from outside. A copy of the database alone therefore opens nothing, as with the CA keys.
/// Format: version 1 | PBKDF2 salt (16) | AES-GCM nonce (12) | tag (16) | ciphertext; the purpose is the
/// associated data, so a value sealed for one use cannot be passed off as another.</summary>
public sealed class KeyEncryptionSecret
{
    private const byte Version = 1;
    private const int SaltSize = 16, NonceSize = 12, TagSize = 16, HeaderSize = 1 + SaltSize + NonceSize + TagSize;
    // As for the CA keys (CaKeyStore): the passphrase may be typed by a person, so the derivation is slow.
    // Derived keys are cached per salt: a process derives once for what it seals and once per salt it opens.
    private const int Iterations = 600_000;

    private readonly Func<string> _passphrase;
    private readonly ConcurrentDictionary<string, byte[]> _keys = new();
    private readonly Lazy<byte[]> _sealingSalt = new(() => RandomNumberGenerator.GetBytes(SaltSize));

    public KeyEncryptionSecret(Func<string> passphrase) => _passphrase = passphrase;

    public byte[] Seal(ReadOnlySpan<byte> plaintext, string purpose)
    {
        var salt = _sealingSalt.Value;
        var output = new byte[HeaderSize + plaintext.Length];
        output[0] = Version;
        salt.CopyTo(output, 1);
        var nonce = output.AsSpan(1 + SaltSize, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var gcm = new AesGcm(KeyFor(salt), TagSize);
        gcm.Encrypt(nonce, plaintext, output.AsSpan(HeaderSize), output.AsSpan(1 + SaltSize + NonceSize, TagSize), Encoding.UTF8.GetBytes(purpose));
        return output;
    }

    /// <exception cref="CryptographicException">Altered, or sealed under another passphrase.</exception>
    public byte[] Open(byte[] sealedBytes, string purpose)
    {
        if (sealedBytes.Length < HeaderSize || sealedBytes[0] != Version)
            throw new CryptographicException("A sealed shared secret is truncated or of an unknown version.");
        var plaintext = new byte[sealedBytes.Length - HeaderSize];
        using var gcm = new AesGcm(KeyFor(sealedBytes.AsSpan(1, SaltSize).ToArray()), TagSize);
        gcm.Decrypt(sealedBytes.AsSpan(1 + SaltSize, NonceSize), sealedBytes.AsSpan(HeaderSize),
            sealedBytes.AsSpan(1 + SaltSize + NonceSize, TagSize), plaintext, Encoding.UTF8.GetBytes(purpose));
        return plaintext;
    }

    /// <summary>A 256-bit key for <paramref name="purpose"/>, the same on every node given the same passphrase and nowhere
    /// stored: for keyed hashes nodes must agree on (see <see cref="Security.SignInNames"/>). The purpose is the salt, so keys for
    /// different purposes are unrelated; derived as slowly as the sealing keys, once per process and purpose.</summary>
    public byte[] DeriveKey(string purpose) => KeyFor(Encoding.UTF8.GetBytes("certportal:derived-key:" + purpose));

    private byte[] KeyFor(byte[] salt) => _keys.GetOrAdd(Convert.ToHexString(salt),
        _ => Rfc2898DeriveBytes.Pbkdf2(_passphrase(), salt, Iterations, HashAlgorithmName.SHA256, 32));
}
