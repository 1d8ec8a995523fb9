using Microsoft.Data.Sqlite;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace CertPortal.Data;

/// <summary>The one place that reads provider error codes, so features can tell "someone else inserted
/// this first" from every other failure (which must propagate, not be taken for a duplicate).</summary>
public static class DatabaseErrors
{
    private const int SqliteConstraint = 19;            // SQLITE_CONSTRAINT
    private const int SqliteConstraintPrimaryKey = 1555; // SQLITE_CONSTRAINT_PRIMARYKEY
    private const int SqliteConstraintUnique = 2067;     // SQLITE_CONSTRAINT_UNIQUE

    /// <summary>True when the save failed only because a primary key or unique index already holds the
    /// value; false for foreign-key, not-null, check and every other error.</summary>
    public static bool IsUniqueViolation(DbUpdateException e) => e.InnerException switch
    {
        SqliteException s => s.SqliteErrorCode == SqliteConstraint && s.SqliteExtendedErrorCode is SqliteConstraintPrimaryKey or SqliteConstraintUnique,
        PostgresException p => p.SqlState == PostgresErrorCodes.UniqueViolation,
        _ => false,
    };

    /// <summary>True when <paramref name="e"/> came from the database: a provider error (<see cref="System.Data.Common.DbException"/>),
    /// a failed save, or either wrapped, as the Npgsql execution strategy wraps a transient failure (a session terminated,
    /// the server restarting) in an InvalidOperationException.</summary>
    public static bool IsDatabaseFailure(Exception e)
    {
        for (Exception? inner = e; inner is not null; inner = inner.InnerException)
            if (inner is System.Data.Common.DbException or DbUpdateException) return true;
        return false;
    }
}
