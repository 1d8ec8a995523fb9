using Microsoft.EntityFrameworkCore;

namespace CertPortal.Tests.Infrastructure;

/// <summary>SQLite's plan for a query exactly as EF Core sends it: an index that a change to the query or to the index makes
/// SQLite skip is a table scan nobody sees in a small test database, so the tests read the plan instead of timing.</summary>
public static class SqlitePlans
{
    /// <summary>The detail column of EXPLAIN QUERY PLAN for <paramref name="query"/>, its parameters written in.</summary>
    public static async Task<List<string>> PlanAsync<T>(CertPortal.Data.CertPortalDbContext db, IQueryable<T> query)
    {
        var lines = query.ToQueryString().Split('\n');
        var sql = string.Join('\n', lines.Where(l => !l.StartsWith(".param set ", StringComparison.Ordinal)));
        foreach (var p in lines.Where(l => l.StartsWith(".param set ", StringComparison.Ordinal)).Select(l => l[".param set ".Length..].Split(' ', 2))
            .OrderByDescending(p => p[0].Length))
            sql = sql.Replace(p[0], p[1], StringComparison.Ordinal);
        await db.Database.OpenConnectionAsync();
        await using var explain = db.Database.GetDbConnection().CreateCommand();
        explain.CommandText = "EXPLAIN QUERY PLAN " + sql;
        var plan = new List<string>();
        await using (var reader = await explain.ExecuteReaderAsync())
            while (await reader.ReadAsync()) plan.Add(reader.GetString(3));
        return plan;
    }
}
