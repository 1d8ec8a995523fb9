using System.Data.Common;
using Microsoft.EntityFrameworkCore.Diagnostics;

namespace CertPortal.Data;

/// <summary>Makes every SQLite commit durable. In WAL mode SQLite's <c>synchronous</c> setting decides whether a
/// commit waits for the WAL to reach the disk: with NORMAL (what many builds default to in WAL mode) a commit
/// that returned can vanish on power loss, and we would have handed out a certificate with no record of it.
/// FULL fsyncs the WAL at every commit; the group writer makes that one fsync per group, not per enrollment.
/// The setting belongs to the connection, not the file, so it is set on every connection: once per pooled native
/// connection (a pooled connection keeps it), not at every open, which on the hot paths is every query. So is the busy
/// timeout (below).</summary>
public sealed class SqliteDurability : DbConnectionInterceptor
{
    public static readonly SqliteDurability Instance = new();

    // Native sqlite3 handles already set; entries go with their handle.
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<object, object> Done = [];

    public override void ConnectionOpened(DbConnection connection, ConnectionEndEventData eventData) => SetFull(connection);

    public override Task ConnectionOpenedAsync(DbConnection connection, ConnectionEndEventData eventData, CancellationToken cancellationToken = default)
    {
        // In-process and instant: no reason to go async.
        SetFull(connection);
        return Task.CompletedTask;
    }

    /// <summary>Sets up a connection opened outside EF Core (<see cref="SqliteReadConnections"/>) as the interceptor does.</summary>
    internal static void Prepare(DbConnection connection) => SetFull(connection);

    private static void SetFull(DbConnection connection)
    {
        if (connection is Microsoft.Data.Sqlite.SqliteConnection { Handle: { } handle } && Done.TryGetValue(handle, out _)) return;
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA synchronous=FULL;";
        // A writer that finds the database locked (the group writer while the CRL publisher commits, or the other way
        // round) waits in SQLite's own busy handler, which tries again after 1, 2, 5 ... 100 ms, rather than in
        // Microsoft.Data.Sqlite's loop, which sleeps 150 ms between tries: during a mass revocation, groups of the writer
        // waited 150-300 ms behind CRL commits that had taken a fraction of that.
        if (connection is Microsoft.Data.Sqlite.SqliteConnection { DefaultTimeout: > 0 and var seconds })
            command.CommandText += " PRAGMA busy_timeout=" + (seconds * 1000L).ToString(System.Globalization.CultureInfo.InvariantCulture) + ";";
        command.ExecuteNonQuery();
        if (connection is Microsoft.Data.Sqlite.SqliteConnection { Handle: { } opened }) Done.AddOrUpdate(opened, Done);
    }
}
