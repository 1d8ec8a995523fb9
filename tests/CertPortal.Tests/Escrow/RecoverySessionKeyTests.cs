using System.Security.Cryptography;
using CertPortal.Escrow;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Escrow;

/// <summary>A data directory from before the recovery session key moved to the database, with the key in a file.</summary>
public sealed class LegacySessionKeyApp : CertPortalApp
{
    public byte[] LegacyKey { get; } = RandomNumberGenerator.GetBytes(32);

    public string LegacyFile => Path.Combine(DataDirectory, "recovery-session-key");

    public override Task InitializeAsync()
    {
        File.WriteAllText(LegacyFile, System.Buffers.Text.Base64Url.EncodeToString(LegacyKey));
        return base.InitializeAsync();
    }
}

public sealed class RecoverySessionKeyTests(LegacySessionKeyApp app) : IClassFixture<LegacySessionKeyApp>
{
    [Fact]
    public async Task A_key_kept_in_the_data_directory_moves_into_the_database_and_its_plaintext_file_is_deleted()
    {
        // Shares sealed before the move still open: the key in use is the file's.
        var associatedData = "share:test"u8.ToArray();
        var sealedShare = app.Service<RecoverySessionKey>().Seal("a share"u8, associatedData);
        var opened = new byte[sealedShare.Length - 28];
        using (var gcm = new AesGcm(app.LegacyKey, 16))
            gcm.Decrypt(sealedShare.AsSpan(0, 12), sealedShare.AsSpan(28), sealedShare.AsSpan(12, 16), opened, associatedData);
        Assert.Equal("a share"u8.ToArray(), opened);
        // No plaintext copy stays on the node's disk, and a restart reads the key from the database.
        Assert.False(File.Exists(app.LegacyFile));
        await app.StopAsync();
        app.Start();
        Assert.Equal(sealedShare.Length, app.Service<RecoverySessionKey>().Open(sealedShare, associatedData).Length + 28);
    }
}
