using System.Security.Cryptography;

namespace CertPortal.Escrow;

/// <summary>Seals agents' submitted shares while a recovery collects its M approvals, so the database
/// never holds a plaintext share. The key lives in <c>DataDirectory/recovery-session-key</c> (0600), not
/// in the database: a stolen database alone reveals nothing.</summary>
public sealed class RecoverySessionKey
{
    private readonly byte[] _key;

    public RecoverySessionKey(CertPortalOptions options, ILogger<RecoverySessionKey> logger)
    {
        // ReadOrCreate writes 32 random bytes, base64url.
        var encoded = SecretFile.ReadOrCreate(null, Path.Combine(options.ResolvedDataDirectory, "recovery-session-key"), "recovery session key", logger);
        _key = System.Buffers.Text.Base64Url.DecodeFromChars(encoded);
    }

    public byte[] Seal(ReadOnlySpan<byte> plaintext, byte[] associatedData)
    {
        var sealedBytes = new byte[12 + 16 + plaintext.Length];
        RandomNumberGenerator.Fill(sealedBytes.AsSpan(0, 12));
        using var gcm = new AesGcm(_key, 16);
        gcm.Encrypt(sealedBytes.AsSpan(0, 12), plaintext, sealedBytes.AsSpan(28), sealedBytes.AsSpan(12, 16), associatedData);
        return sealedBytes;
    }

    /// <exception cref="EscrowIntegrityException">Altered or foreign sealed share.</exception>
    public byte[] Open(byte[] sealedBytes, byte[] associatedData)
    {
        if (sealedBytes.Length <= 28) throw new EscrowIntegrityException("A sealed share is truncated.");
        var plaintext = new byte[sealedBytes.Length - 28];
        try
        {
            using var gcm = new AesGcm(_key, 16);
            gcm.Decrypt(sealedBytes.AsSpan(0, 12), sealedBytes.AsSpan(28), sealedBytes.AsSpan(12, 16), plaintext, associatedData);
            return plaintext;
        }
        catch (AuthenticationTagMismatchException e)
        {
            throw new EscrowIntegrityException("A submitted share was altered while stored.", e);
        }
    }
}
