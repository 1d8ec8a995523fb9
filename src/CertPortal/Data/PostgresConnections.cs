using System.Data.Common;
using Npgsql;

namespace CertPortal.Data;

/// <summary>Npgsql settings the service adds to <c>Database:ConnectionString</c> on PostgreSQL, each only when the
/// string does not set it itself (an operator's choice wins).</summary>
public static class PostgresConnections
{
    /// <summary><c>Max Auto Prepare</c>: the hot commands (token look-up and spend, the inserts, the key lock, EF Core's
    /// compiled queries) are the same few texts thousands of times, so each pooled connection prepares them after
    /// <c>Auto Prepare Min Usages</c> uses and PostgreSQL stops parsing and planning them per call.
    /// <c>No Reset On Close</c>: a connection going back to the pool is not reset (Npgsql's reset, sent with the next
    /// command, resets the session's settings and releases session locks); the service changes no session setting on
    /// pooled connections and takes session-level locks only on unpooled ones (<see cref="DatabaseLocks"/>).</summary>
    public static string? Tune(string? connectionString)
    {
        // Missing: start-up validation names the setting.
        if (string.IsNullOrWhiteSpace(connectionString)) return connectionString;
        var given = new DbConnectionStringBuilder { ConnectionString = connectionString }.Keys.Cast<string>()
            .Select(k => k.Replace(" ", "", StringComparison.Ordinal)).ToHashSet(StringComparer.OrdinalIgnoreCase);
        var tuned = new NpgsqlConnectionStringBuilder(connectionString);
        if (!given.Contains("MaxAutoPrepare")) tuned.MaxAutoPrepare = 64;
        if (!given.Contains("NoResetOnClose")) tuned.NoResetOnClose = true;
        return tuned.ConnectionString;
    }
}
