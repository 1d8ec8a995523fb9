using Npgsql;

namespace CertPortal.Data;

/// <summary>PostgreSQL's side of <see cref="SqliteReadConnections"/>: the enrollment's token read
/// (<see cref="DirectSql.FindTokenByHashAsync(PostgresReadConnections, byte[], CancellationToken)"/>) on a data source of its own,
/// outside EF Core. Through the request's pooled context every read paid EF Core's open and close of the context's connection
/// around Npgsql's own pool, and Npgsql parsed the statement's text for its named parameter at every execution; here the
/// statement has a positional parameter (sent as written) and is prepared once per physical connection (the tuned connection
/// string's <c>Max Auto Prepare</c>, <see cref="PostgresConnections.Tune"/>). A read holds no transaction, so it sees the latest
/// commit, as before. Null on SQLite.</summary>
public sealed class PostgresReadConnections(string connectionString) : IAsyncDisposable, IDisposable
{
    public NpgsqlDataSource DataSource { get; } = NpgsqlDataSource.Create(PostgresConnections.Tune(connectionString)!);

    private long _reads;

    /// <summary>Reads served so far (tests: the token read does not go through EF Core).</summary>
    public long Reads => Interlocked.Read(ref _reads);

    internal void Counted() => Interlocked.Increment(ref _reads);

    public ValueTask DisposeAsync() => DataSource.DisposeAsync();

    public void Dispose() => DataSource.Dispose();
}
