using System.Security.Cryptography;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.Data.Sqlite;

namespace CertPortal.Tests.Data;

/// <summary>The WAL write shim (<see cref="SqliteWalWrites"/>): a commit's frames reach the file in one write, and nothing
/// SQLite relies on changes: another connection reads every commit at once (with <c>synchronous=FULL</c>, the service's, and
/// with NORMAL, where no sync follows a commit), a commit larger than the shim's buffer is whole, and after checkpoints, a
/// restarted WAL and a reopened database every row is as written and the file passes SQLite's integrity check. The
/// connections here are Microsoft.Data.Sqlite's, as the service's are, so the counts also show the shim is the VFS they use.
/// Every call is synchronous: SQLite calls the VFS on the caller's thread, where the shim counts.</summary>
public sealed class SqliteWalWritesTests : IDisposable
{
    private readonly string _dir = TempDir.Create("sqlite-wal-writes");
    private readonly Dictionary<long, byte[]> _written = [];

    public SqliteWalWritesTests() => SqliteWalWrites.Install();

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_dir, recursive: true);
    }

    [Fact]
    public void A_commit_of_many_pages_is_one_write_to_the_file_and_another_connection_reads_all_of_it()
    {
        Assert.True(SqliteWalWrites.Installed);
        using var writer = Open("FULL");
        using var reader = Open("FULL");
        var before = SqliteWalWrites.CountsOnThisThread;
        Insert(writer, rows: 40, size: 1500);
        var after = SqliteWalWrites.CountsOnThisThread;

        // Two rows a 4 KiB page, ~20 frames, each written by SQLite as a header and a page; the file got one write.
        Assert.True(after.Writes - before.Writes >= 40, $"{after.Writes - before.Writes} WAL writes for 40 rows of 1,500 bytes");
        Assert.Equal(1, after.FileWrites - before.FileWrites);
        AssertReads(reader);
    }

    [Fact]
    public void With_synchronous_normal_each_commit_is_in_the_file_when_it_returns()
    {
        // No sync follows a NORMAL commit: what publishes it to readers is the write after its commit frame's header.
        using var writer = Open("NORMAL");
        using var reader = Open("NORMAL");
        for (var i = 0; i < 60; i++)
        {
            Insert(writer, rows: 1 + i % 7, size: 300 + 97 * i);
            AssertReads(reader);
        }
    }

    [Fact]
    public void A_commit_larger_than_the_buffer_and_checkpoints_and_a_restarted_wal_lose_nothing()
    {
        using (var writer = Open("FULL"))
        using (var reader = Open("FULL"))
        {
            var before = SqliteWalWrites.CountsOnThisThread;
            Insert(writer, rows: 3, size: 1_500_000);
            // 4.5 MB in writes of up to 128 KiB (the unix VFS's largest), not two writes per page.
            Assert.InRange(SqliteWalWrites.CountsOnThisThread.FileWrites - before.FileWrites, 34, 60);
            AssertReads(reader);
            for (var round = 0; round < 5; round++)
            {
                // TRUNCATE empties the WAL; RESTART makes the next commit write from its start over older frames.
                Execute(writer, round % 2 == 0 ? "PRAGMA wal_checkpoint(TRUNCATE)" : "PRAGMA wal_checkpoint(RESTART)");
                Insert(writer, rows: 40, size: 900);
                Update(writer);
                AssertReads(reader);
            }
        }
        SqliteConnection.ClearAllPools();
        using var reopened = Open("FULL");
        AssertReads(reopened);
        Assert.Equal("ok", Scalar(reopened, "PRAGMA integrity_check"));
    }

    private SqliteConnection Open(string synchronous)
    {
        var connection = new SqliteConnection($"Data Source={Path.Combine(_dir, "t.db")};Pooling=False");
        connection.Open();
        Execute(connection, $"PRAGMA journal_mode=WAL; PRAGMA synchronous={synchronous}; PRAGMA busy_timeout=10000; " +
            "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)");
        return connection;
    }

    private void Insert(SqliteConnection connection, int rows, int size)
    {
        using var tx = connection.BeginTransaction();
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO t (v) VALUES ($v) RETURNING id";
        var v = insert.Parameters.Add("$v", SqliteType.Blob);
        var added = new Dictionary<long, byte[]>();
        for (var i = 0; i < rows; i++)
        {
            var bytes = RandomNumberGenerator.GetBytes(size);
            v.Value = bytes;
            added[(long)insert.ExecuteScalar()!] = bytes;
        }
        tx.Commit();
        foreach (var (id, bytes) in added) _written[id] = bytes;
    }

    /// <summary>Rewrites every tenth row in place: frames for pages already in the WAL.</summary>
    private void Update(SqliteConnection connection)
    {
        using var tx = connection.BeginTransaction();
        using var update = connection.CreateCommand();
        update.CommandText = "UPDATE t SET v = $v WHERE id = $id";
        var v = update.Parameters.Add("$v", SqliteType.Blob);
        var id = update.Parameters.Add("$id", SqliteType.Integer);
        var changed = new Dictionary<long, byte[]>();
        foreach (var key in _written.Keys.Where(k => k % 10 == 0))
        {
            var bytes = RandomNumberGenerator.GetBytes(_written[key].Length);
            (v.Value, id.Value) = (bytes, key);
            Assert.Equal(1, update.ExecuteNonQuery());
            changed[key] = bytes;
        }
        tx.Commit();
        foreach (var (key, bytes) in changed) _written[key] = bytes;
    }

    private void AssertReads(SqliteConnection connection)
    {
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT id, v FROM t";
        using var rows = select.ExecuteReader();
        var seen = 0;
        while (rows.Read())
        {
            Assert.True(_written.TryGetValue(rows.GetInt64(0), out var expected), $"row {rows.GetInt64(0)} was never written");
            Assert.True(expected.AsSpan().SequenceEqual((byte[])rows.GetValue(1)), $"row {rows.GetInt64(0)} differs");
            seen++;
        }
        Assert.Equal(_written.Count, seen);
    }

    private static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static string? Scalar(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar() as string;
    }
}
