using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Tests.Data;

/// <summary>Each provider's migrations end in a snapshot of the model; a change to an entity or its
/// configuration without <c>scripts/add-migration.sh</c> leaves the snapshot behind, and the database
/// would silently miss the change. Built through the design-time factories dotnet-ef uses; no database
/// is contacted.</summary>
public sealed class ModelSnapshotTests
{
    [Fact]
    public void Sqlite_model_matches_its_migrations_snapshot()
    {
        using var db = new SqliteDesignTimeFactory().CreateDbContext([]);
        Assert.False(db.Database.HasPendingModelChanges(), "The model differs from migrations/Sqlite: run scripts/add-migration.sh <Name>.");
    }

    [Fact]
    public void Postgresql_model_matches_its_migrations_snapshot()
    {
        using var db = new NpgsqlDesignTimeFactory().CreateDbContext([]);
        Assert.False(db.Database.HasPendingModelChanges(), "The model differs from migrations/Postgres: run scripts/add-migration.sh <Name>.");
    }
}
