using Microsoft.Data.Sqlite;

namespace CertPortal.Data;

/// <summary>Which file a SQLite connection string opens, as SQLite itself resolves it, for what must know it without
/// opening the database first: the one-process lock beside it, and whether other connections see the same data.</summary>
public static class SqliteDatabaseFile
{
    /// <summary>The database file's full path, or null for an in-memory database (private to its connection, or shared by
    /// name within one process: nothing another process could open).</summary>
    /// <remarks>Microsoft.Data.Sqlite opens with <c>SQLITE_OPEN_URI</c>, so a data source may also be a URI filename
    /// (https://www.sqlite.org/uri.html): <c>file:</c>, an optional <c>//</c> authority that must be empty or
    /// <c>localhost</c>, a percent-encoded path up to <c>?</c> or <c>#</c>, and parameters, of which <c>mode=memory</c>
    /// makes the database in-memory, as does the path <c>:memory:</c>.</remarks>
    public static string? Of(string connectionString)
    {
        var builder = new SqliteConnectionStringBuilder(connectionString);
        if (builder.Mode == SqliteOpenMode.Memory) return null;
        var source = builder.DataSource;
        if (string.IsNullOrEmpty(source)) return null; // a temporary database SQLite deletes when the connection closes
        if (!source.StartsWith("file:", StringComparison.Ordinal))
            return source == ":memory:" ? null : Path.GetFullPath(source); // relative to the working directory, as SQLite opens it

        var uri = source["file:".Length..];
        var end = uri.IndexOfAny(['?', '#']);
        var query = end >= 0 && uri[end] == '?' ? uri[(end + 1)..].Split('#')[0] : "";
        var path = end >= 0 ? uri[..end] : uri;
        if (path.StartsWith("//", StringComparison.Ordinal))
        {
            var slash = path.IndexOf('/', 2);
            var authority = slash < 0 ? path[2..] : path[2..slash];
            if (authority.Length > 0 && !authority.Equals("localhost", StringComparison.OrdinalIgnoreCase))
                throw new ArgumentException($"The SQLite URI {source} names the host '{authority}'; SQLite opens local files only (file:/path or file:///path).");
            path = slash < 0 ? "" : path[slash..];
        }
        path = Uri.UnescapeDataString(path);
        var inMemory = query.Split('&').Any(p => p.Equals("mode=memory", StringComparison.Ordinal));
        if (inMemory || path.Length == 0 || path == ":memory:") return null;
        return Path.GetFullPath(path);
    }
}
