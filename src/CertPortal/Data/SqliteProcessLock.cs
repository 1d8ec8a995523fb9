namespace CertPortal.Data;

/// <summary>SQLite serves one process. Each process keeps state of its own beside the database (the look-up and OCSP
/// caches, dropped only by the process that commits a change; the group writer, the CRL publisher, the outbox workers,
/// which assume they are the only ones), so a second process on the same file would serve stale answers and do the
/// work twice. This is the guard: an exclusive lock on a file beside the database (<c>.certportal.db.lock</c>),
/// taken before anything is written (data directory, migrations, CA) and held until the process ends.
/// <para>.NET takes it with flock(2) when the file is opened with <see cref="FileShare.None"/>. The kernel drops such a lock
/// when its holder dies, however it dies, so a crash leaves no stale lock, and the file itself is left in place (deleting
/// it at exit would let a process that opened it a moment earlier lock a name nobody else finds). flock conflicts
/// between two opens in one process too, so a second host in a test process is refused as a second process is.
/// (Setting DOTNET_SYSTEM_IO_DISABLEFILELOCKING turns .NET's flock, and with it this guard, off.)</para>
/// PostgreSQL has no such lock: many nodes are the point there.</summary>
public sealed class SqliteProcessLock(string connectionString) : IDisposable
{
    /// <summary>Linux's EWOULDBLOCK, which .NET reports as the HResult of the IOException when flock finds the file locked.</summary>
    private const int LockHeldElsewhere = 11;

    private readonly Lock _gate = new();
    private FileStream? _held;

    /// <summary>True when .NET's file locking is switched off for this process (<c>DOTNET_SYSTEM_IO_DISABLEFILELOCKING</c> or the
    /// <c>System.IO.DisableFileLocking</c> switch, as .NET reads them): FileShare.None then takes no flock, and this guard
    /// holds nothing. Start-up says so in a warning rather than refusing: the setting is an operator's choice (some network
    /// file systems need it).</summary>
    public static bool FileLockingDisabled =>
        AppContext.TryGetSwitch("System.IO.DisableFileLocking", out var disabled) ? disabled :
        Environment.GetEnvironmentVariable("DOTNET_SYSTEM_IO_DISABLEFILELOCKING") is { } value &&
        (value == "1" || value.Equals("true", StringComparison.OrdinalIgnoreCase));

    /// <summary>The database file, or null for an in-memory database (nothing another process could open).</summary>
    public string? DatabaseFile { get; } = SqliteDatabaseFile.Of(connectionString);

    /// <summary>Hidden, and out of the <c>certportal.db*</c> glob that means the database's own files (the database, its WAL
    /// and shared memory) to a backup script: a .NET program that opens it for reading would meet the lock.</summary>
    public string? LockFile => DatabaseFile is null ? null : Path.Combine(Path.GetDirectoryName(DatabaseFile)!, "." + Path.GetFileName(DatabaseFile) + ".lock");

    /// <summary>Takes the lock (or keeps it), or throws <see cref="DatabaseInUseException"/> at once when another process,
    /// or another host in this one, holds it.</summary>
    public void Take()
    {
        if (!TryTake()) throw new DatabaseInUseException(DatabaseFile!, LockFile!);
    }

    /// <summary>Takes the lock (or keeps it) and answers true, or answers false at once when someone else holds it.</summary>
    public bool TryTake()
    {
        if (LockFile is null) return true;
        lock (_gate)
        {
            if (_held is not null) return true;
            Directory.CreateDirectory(Path.GetDirectoryName(LockFile)!);
            try
            {
                // Opening an existing file to read changes nothing in it: a refused process writes nothing.
                _held = new FileStream(LockFile, FileMode.OpenOrCreate, FileAccess.Read, FileShare.None, bufferSize: 0);
                return true;
            }
            catch (IOException e) when (e.HResult == LockHeldElsewhere)
            {
                return false;
            }
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _held?.Dispose();
            _held = null;
        }
    }
}

/// <summary>Another process serves the SQLite database: start-up stops with <see cref="Exception.Message"/> (one line, what
/// to do) and <see cref="ExitCode"/>.</summary>
public sealed class DatabaseInUseException(string databaseFile, string lockFile) : Exception(
    $"CertPortal cannot start: the SQLite database {databaseFile} is in use by another CertPortal process (it holds {lockFile}; " +
    $"`fuser -v {lockFile}` finds it). Stop that process first; several nodes on one database need PostgreSQL (README: Running several nodes).")
{
    /// <summary>EX_TEMPFAIL (sysexits.h): the start can succeed once the other process has ended, e.g. a container restarted
    /// while the old one drains, tried again by its restart policy.</summary>
    public const int ExitCode = 75;

    public string DatabaseFile { get; } = databaseFile;
}
