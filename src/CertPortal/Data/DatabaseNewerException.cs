namespace CertPortal.Data;

/// <summary>The database was migrated by a newer CertPortal than this one: start-up stops with <see cref="Exception.Message"/>
/// (one line, what to do) and <see cref="ExitCode"/>, before it writes anything. An older node would otherwise serve rows whose
/// meaning changed under it (since DeltaCrlChanges, for example, it would delete the CRL change rows a delta CRL still needs).</summary>
public sealed class DatabaseNewerException(IReadOnlyList<string> unknownMigrations) : Exception(
    "CertPortal cannot start: the database was migrated by a newer version of CertPortal (migrations unknown to this version: " +
    $"{string.Join(", ", unknownMigrations)}). Run that version or a later one; the nodes on one database must all run one version " +
    "(README: Running several nodes, Upgrades).")
{
    /// <summary>EX_CONFIG (sysexits.h): what is deployed must change; unlike <see cref="DatabaseInUseException.ExitCode"/>, starting
    /// again later does not help.</summary>
    public const int ExitCode = 78;

    public IReadOnlyList<string> UnknownMigrations { get; } = unknownMigrations;
}
