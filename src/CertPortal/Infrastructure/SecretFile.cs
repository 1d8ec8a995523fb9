using System.Security.Cryptography;

namespace CertPortal;

/// <summary>Files that hold secrets or must never be half-written: written to a temporary file with
/// mode 0600, flushed to disk, then renamed over the target (rename is atomic on POSIX).</summary>
public static class SecretFile
{
    public static void WriteAtomically(string path, string contents)
    {
        var tmp = path + ".tmp-" + Guid.NewGuid().ToString("N");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var fs = new FileStream(tmp, options))
        using (var writer = new StreamWriter(fs))
        {
            writer.Write(contents);
            writer.Flush();
            fs.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Returns the configured secret, or the one in <paramref name="path"/>, creating a random
    /// one there on first start. The log names the file, never the secret. A file holding less than
    /// <paramref name="minimumLength"/> characters (emptied, truncated, or written by hand) stops the start with its name: read as
    /// it was, an empty file sealed the CA with an empty passphrase and made an empty admin key.</summary>
    public static string ReadOrCreate(string? configured, string path, string what, int minimumLength, ILogger logger)
    {
        if (!string.IsNullOrEmpty(configured)) return configured;
        if (File.Exists(path))
        {
            var stored = File.ReadAllText(path).Trim();
            return stored.Length >= minimumLength ? stored
                : throw new InvalidOperationException($"The {what} file {path} holds {stored.Length} characters, fewer than {minimumLength}: " +
                    "restore it from your backup (or configure the secret); delete it only if nothing was ever sealed or issued with it.");
        }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var secret = Base64Url.Encode(RandomNumberGenerator.GetBytes(32));
        WriteAtomically(path, secret + "\n");
        logger.LogWarning("Generated the {Secret} and wrote it to {Path} (mode 0600); configure it from a secret store in production", what, path);
        return secret;
    }
}

public static class Base64Url
{
    public static string Encode(ReadOnlySpan<byte> bytes) => System.Buffers.Text.Base64Url.EncodeToString(bytes);
}
