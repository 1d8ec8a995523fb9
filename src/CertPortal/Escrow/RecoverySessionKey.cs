using System.Security.Cryptography;
using CertPortal.Cluster;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Escrow;

/// <summary>Seals agents' submitted shares while a recovery collects its M approvals, so the database
/// never holds a plaintext share. Every node needs the same key (an approval may reach one node and the
/// export another), so it is kept in the database, itself sealed under CertPortal:Ca:KeyPassphrase
/// (<see cref="KeyEncryptionSecret"/>): a stolen database alone still reveals nothing.</summary>
public sealed class RecoverySessionKey(KeyEncryptionSecret kek, CertPortalOptions options, TimeProvider time, ILogger<RecoverySessionKey> logger)
{
    private byte[]? _key;

    private byte[] Key => _key ?? throw new InvalidOperationException("The recovery session key is loaded at start-up; it is not loaded yet.");

    /// <summary>At start-up, under the start-up lock. An installation from before the key moved to the database
    /// brings its <c>DataDirectory/recovery-session-key</c> in once, so shares sealed with it still open.</summary>
    public async Task LoadOrCreateAsync(CertPortalDbContext db, CancellationToken ct)
    {
        var stored = await db.SharedSecrets.AsNoTracking().FirstOrDefaultAsync(s => s.Name == SharedSecretNames.RecoverySessionKey, ct);
        if (stored is not null)
        {
            try
            {
                _key = kek.Open(stored.Value, SharedSecretNames.RecoverySessionKey);
            }
            catch (CryptographicException e)
            {
                throw new InvalidOperationException("Cannot open the recovery session key stored in the database: this node's " +
                    "CertPortal:Ca:KeyPassphrase is not the one the other nodes use.", e);
            }
            // A move cut short between the commit and the file's deletion.
            if (ReadLegacyFile() is { } left && CryptographicOperations.FixedTimeEquals(left, _key)) DeleteLegacyFile();
            return;
        }
        var legacy = ReadLegacyFile();
        _key = legacy ?? RandomNumberGenerator.GetBytes(32);
        db.SharedSecrets.Add(new SharedSecret
        {
            Name = SharedSecretNames.RecoverySessionKey, Value = kek.Seal(_key, SharedSecretNames.RecoverySessionKey), CreatedAt = time.GetUtcNow(),
        });
        await db.SaveChangesAsync(ct);
        db.ChangeTracker.Clear();
        // The key is in the database now, sealed: a plaintext copy left on a node's disk is what the move is for.
        if (legacy is not null) DeleteLegacyFile();
    }

    private string LegacyFile => Path.Combine(options.ResolvedDataDirectory, "recovery-session-key");

    /// <summary>The key as a version before the database kept it wrote it (base64url, in the data directory), or null.</summary>
    private byte[]? ReadLegacyFile() =>
        File.Exists(LegacyFile) ? System.Buffers.Text.Base64Url.DecodeFromChars(File.ReadAllText(LegacyFile).Trim()) : null;

    private void DeleteLegacyFile()
    {
        File.Delete(LegacyFile);
        logger.LogInformation("Moved the recovery session key from {Path} into the database (sealed) and deleted the file", LegacyFile);
    }

    public byte[] Seal(ReadOnlySpan<byte> plaintext, byte[] associatedData)
    {
        var sealedBytes = new byte[12 + 16 + plaintext.Length];
        RandomNumberGenerator.Fill(sealedBytes.AsSpan(0, 12));
        using var gcm = new AesGcm(Key, 16);
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
            using var gcm = new AesGcm(Key, 16);
            gcm.Decrypt(sealedBytes.AsSpan(0, 12), sealedBytes.AsSpan(28), sealedBytes.AsSpan(12, 16), plaintext, associatedData);
            return plaintext;
        }
        catch (AuthenticationTagMismatchException e)
        {
            throw new EscrowIntegrityException("A submitted share was altered while stored.", e);
        }
    }
}
