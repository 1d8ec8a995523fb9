using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace CertPortal;

/// <summary>Files that hold secrets or must never be half-written: written to a temporary file with
/// mode 0600, flushed to disk, then renamed over the target (rename is atomic on POSIX), and the directory
/// flushed too: the rename is a change to the directory, and until that reaches the disk a crash can undo it
/// and lose the file, after its secret was used (the CA sealed with it in the database, never to open again).</summary>
public static partial class SecretFile
{
    public static void WriteAtomically(string path, string contents)
    {
        var tmp = path + ".tmp-" + Guid.NewGuid().ToString("N");
        WriteFlushed(tmp, contents);
        File.Move(tmp, path, overwrite: true);
        SyncDirectoryOf(path);
    }

    private static void WriteFlushed(string newFile, string contents)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using var fs = new FileStream(newFile, options);
        using var writer = new StreamWriter(fs);
        writer.Write(contents);
        writer.Flush();
        fs.Flush(flushToDisk: true);
    }

    /// <summary>fsync(2) of the directory holding <paramref name="path"/>, which .NET has no API for (File.OpenHandle refuses
    /// a directory).</summary>
    internal static void SyncDirectoryOf(string path)
    {
        // Windows has no directory to flush (NTFS journals the rename itself), nor this libc.
        if (OperatingSystem.IsWindows()) return;
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var fd = Open(directory, OpenReadOnly | OpenCloseOnExec);
        if (fd < 0) throw new IOException($"Cannot open {directory} to flush it to disk: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}.");
        try
        {
            // EINVAL: a file system that cannot flush a directory (nothing more can be done there).
            if (Fsync(fd) != 0 && Marshal.GetLastPInvokeError() is var errno && errno != ErrnoInvalid)
                throw new IOException($"Cannot flush {directory} to disk: {Marshal.GetPInvokeErrorMessage(errno)}.");
        }
        finally
        {
            _ = Close(fd);
        }
    }

    // Linux values, the same on x86-64 and arm64 (O_DIRECTORY is not, so it is left out: a directory opens read-only without it).
    private const int OpenReadOnly = 0;
    private const int OpenCloseOnExec = 0x80000;
    private const int ErrnoInvalid = 22;
    private const int ErrnoExists = 17;
    private const int ErrnoNotPermitted = 1;
    private const int ErrnoNotSupported = 95;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Link(string existing, string name);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    /// <summary>Returns the configured secret, or the one in <paramref name="path"/>, creating a random
    /// one there on first start. The log names the file, never the secret. A file holding less than
    /// <paramref name="minimumLength"/> characters (emptied, truncated, or written by hand) stops the start with its name: read as
    /// it was, an empty file sealed the CA with an empty passphrase and made an empty admin key.</summary>
    public static string ReadOrCreate(string? configured, string path, string what, int minimumLength, ILogger logger)
    {
        if (!string.IsNullOrEmpty(configured)) return configured;
        if (!File.Exists(path))
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            var secret = Base64Url.Encode(RandomNumberGenerator.GetBytes(32));
            if (TryCreate(path, secret + "\n"))
            {
                logger.LogWarning("Generated the {Secret} and wrote it to {Path} (mode 0600); configure it from a secret store in production", what, path);
                return secret;
            }
            // Another process made it first (nodes sharing the data directory start together; the admin API key is made
            // outside the start-up lock): its secret is the one, for this start and every later one.
        }
        var stored = File.ReadAllText(path).Trim();
        return stored.Length >= minimumLength ? stored
            : throw new InvalidOperationException($"The {what} file {path} holds {stored.Length} characters, fewer than {minimumLength}: " +
                "restore it from your backup (or configure the secret); delete it only if nothing was ever sealed or issued with it.");
    }

    /// <summary>Creates <paramref name="path"/> holding <paramref name="contents"/> unless it exists; false then, having written
    /// nothing. The flushed temporary file is hard-linked to the name, which link(2) refuses to do over an existing file:
    /// two processes creating it at once agree on one file, complete from the moment it has its name (a rename would
    /// replace the first one's file after it had read its own secret back).</summary>
    internal static bool TryCreate(string path, string contents)
    {
        var tmp = path + ".tmp-" + Guid.NewGuid().ToString("N");
        WriteFlushed(tmp, contents);
        bool created;
        try
        {
            // Windows has no link(2) here: the check and the move are two steps there, as on a file system without hard links.
            var errno = OperatingSystem.IsWindows() ? ErrnoNotSupported : Link(tmp, path) == 0 ? 0 : Marshal.GetLastPInvokeError();
            created = errno == 0;
            if (errno is ErrnoNotPermitted or ErrnoNotSupported)
            {
                created = !File.Exists(path);
                if (created) File.Move(tmp, path, overwrite: false);
            }
            else if (errno is not (0 or ErrnoExists))
                throw new IOException($"Cannot create {path}: {Marshal.GetPInvokeErrorMessage(errno)}.");
        }
        finally
        {
            File.Delete(tmp);
        }
        // Also when another process made it: its secret may be used from here on, so its name must survive a crash too.
        SyncDirectoryOf(path);
        return created;
    }
}

public static class Base64Url
{
    public static string Encode(ReadOnlySpan<byte> bytes) => System.Buffers.Text.Base64Url.EncodeToString(bytes);
}
