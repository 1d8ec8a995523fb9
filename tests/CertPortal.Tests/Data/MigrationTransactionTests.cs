using CertPortal.Data;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;

namespace CertPortal.Tests.Data;

/// <summary>A migration applies in one transaction together with its row in the migrations history only if none of its
/// commands suppresses the transaction. One that does (EF Core's SQLite table rebuild opens with
/// <c>PRAGMA foreign_keys = 0</c>, which SQLite ignores inside a transaction) makes EF Core commit the migration in parts:
/// a crash or a killed start between them leaves some of its changes applied and the migration unrecorded, and the next
/// start fails re-applying them (dropping an index that is already gone). An upgrade must survive a crash at any point,
/// so every migration of both providers is checked here, as EF Core would send it; no database is contacted.</summary>
public sealed class MigrationTransactionTests
{
    [Fact]
    public void Every_sqlite_migration_runs_in_one_transaction()
    {
        using var db = new SqliteDesignTimeFactory().CreateDbContext([]);
        AssertEveryMigrationTransactional(db);
    }

    [Fact]
    public void Every_postgresql_migration_runs_in_one_transaction()
    {
        using var db = new NpgsqlDesignTimeFactory().CreateDbContext([]);
        AssertEveryMigrationTransactional(db);
    }

    private static void AssertEveryMigrationTransactional(CertPortalDbContext db)
    {
        var migrations = db.GetService<IMigrationsAssembly>();
        var generator = db.GetService<IMigrationsSqlGenerator>();
        var models = db.GetService<IModelRuntimeInitializer>();
        var provider = db.Database.ProviderName!;
        Assert.NotEmpty(migrations.Migrations);
        var suppressed = new List<string>();
        var commands = 0;
        foreach (var (id, type) in migrations.Migrations)
        {
            var migration = migrations.CreateMigration(type, provider);
            // The target model as the migrator hands it to the generator: SQLite's rebuild of a table is planned from it.
            var target = migration.TargetModel is null ? null : models.Initialize(migration.TargetModel, designTime: false);
            foreach (var command in generator.Generate(migration.UpOperations, target))
            {
                commands++;
                if (command.TransactionSuppressed) suppressed.Add($"{id}: {command.CommandText.Trim()}");
            }
        }
        Assert.True(commands > migrations.Migrations.Count, "The generator produced no commands: the check would pass without looking.");
        Assert.True(suppressed.Count == 0, "Commands that cannot run in the migration's transaction:\n" + string.Join("\n", suppressed));
    }
}
