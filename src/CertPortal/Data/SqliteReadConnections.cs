using System.Collections.Concurrent;
using Microsoft.Data.Sqlite;

namespace CertPortal.Data;

/// <summary>SQLite connections kept open for the enrollment's token read (<see cref="DirectSql.FindTokenByHashAsync(SqliteReadConnections, byte[], CancellationToken)"/>:
/// RSA issuers, and tokens that an ECDSA issuer's claim in the group writer did not take), outside EF Core: a read then costs its
/// statement and nothing else. Through a pooled context it cost more than the query
/// (a profile of EC-P256 enrollments, session 12: EF Core's open and close of the context's connection 4.2 % of all
/// samples, as Microsoft.Data.Sqlite registered EF Core's SQL functions on every open and removed them on every close,
/// and the statement compiled again each time, because a connection's kept statements go with its close). A connection here
/// holds no transaction between reads (each statement reads the latest commit, as before), so checkpoints are not held
/// up. Null on PostgreSQL, which has <see cref="PostgresReadConnections"/>.</summary>
public sealed class SqliteReadConnections(string connectionString) : IDisposable
{
    /// <summary>Open connections kept idle; more than this many reads at once open extra ones, closed after use.</summary>
    public const int MaxIdle = 16;

    private readonly ConcurrentBag<SqliteConnection> _idle = [];
    private int _idleCount;
    private bool _disposed;
    private long _rented;
    private long _opened;

    /// <summary>Reads served so far, and connections opened for them: how well keeping them works.</summary>
    public long Rented => Interlocked.Read(ref _rented);
    public long Opened => Interlocked.Read(ref _opened);

    public SqliteConnection Rent()
    {
        Interlocked.Increment(ref _rented);
        if (_idle.TryTake(out var connection))
        {
            Interlocked.Decrement(ref _idleCount);
            return connection;
        }
        Interlocked.Increment(ref _opened);
        connection = new SqliteConnection(connectionString);
        connection.Open();
        SqliteDurability.Prepare(connection);
        return connection;
    }

    /// <summary>Keeps <paramref name="connection"/> for the next read, unless it failed (<paramref name="healthy"/> false: it is
    /// closed, and the next read opens a new one) or enough are kept.</summary>
    public void Return(SqliteConnection connection, bool healthy)
    {
        if (healthy && !Volatile.Read(ref _disposed))
        {
            if (Interlocked.Increment(ref _idleCount) <= MaxIdle)
            {
                _idle.Add(connection);
                return;
            }
            Interlocked.Decrement(ref _idleCount);
        }
        connection.Dispose();
    }

    public void Dispose()
    {
        Volatile.Write(ref _disposed, true);
        while (_idle.TryTake(out var connection)) connection.Dispose();
    }
}
