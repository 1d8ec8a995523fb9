using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace CertPortal.Tests.Security;

/// <summary>The generated secrets' files (the CA key passphrase, the admin API key) when nothing is configured.</summary>
public sealed class SecretFileTests : IDisposable
{
    private readonly string _dir = TempDir.Create("secret-file");

    public void Dispose() => TempDir.Delete(_dir);

    [Fact]
    public void A_secret_is_made_once_kept_private_and_read_back()
    {
        var path = Path.Combine(_dir, "ca-key-passphrase");
        var made = SecretFile.ReadOrCreate(null, path, "CA key passphrase", 12, NullLogger.Instance);
        Assert.True(made.Length >= 32);
        Assert.Equal(made, SecretFile.ReadOrCreate(null, path, "CA key passphrase", 12, NullLogger.Instance));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.Equal("configured secret", SecretFile.ReadOrCreate("configured secret", path, "CA key passphrase", 12, NullLogger.Instance));
    }

    [Theory]
    [InlineData("")]
    [InlineData("\n")]
    [InlineData("short\n")]
    public void A_file_emptied_or_cut_short_stops_the_start_naming_it(string contents)
    {
        // Read as it was, an empty file sealed the CA with an empty passphrase (and made an empty admin API key).
        var path = Path.Combine(_dir, "ca-key-passphrase");
        File.WriteAllText(path, contents);
        var e = Assert.Throws<InvalidOperationException>(() => SecretFile.ReadOrCreate(null, path, "CA key passphrase", 12, NullLogger.Instance));
        Assert.Contains(path, e.Message);
        Assert.Equal(contents, File.ReadAllText(path)); // left for the operator to restore
    }
}
