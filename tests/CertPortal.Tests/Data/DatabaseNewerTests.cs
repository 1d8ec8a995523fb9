using System.Net;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Postgres;
using Microsoft.AspNetCore.Builder;
using Microsoft.Data.Sqlite;
using Npgsql;

namespace CertPortal.Tests.Data;

/// <summary>A node older than its database (one left behind in an upgrade) refuses to start, saying so, and migrates
/// nothing: the database holds a migration this version does not know.</summary>
public sealed class DatabaseNewerTests
{
    private const string Newer = "29991231000000_FromANewerVersion";

    [Fact]
    public async Task A_node_older_than_its_sqlite_database_exits_with_one_line_and_changes_nothing()
    {
        await using var first = new CertPortalNode("current", new Dictionary<string, string>());
        first.Start();
        await first.WaitReadyAsync();
        first.Kill();
        var file = Path.Combine(first.DataDirectory, "certportal.db");
        Sql(file, $"INSERT INTO \"__EFMigrationsHistory\" (\"MigrationId\", \"ProductVersion\") VALUES ('{Newer}', '99.0.0')");
        var history = Sql(file, "SELECT group_concat(\"MigrationId\", ',') FROM (SELECT \"MigrationId\" FROM \"__EFMigrationsHistory\" ORDER BY 1)");

        await using var older = new CertPortalNode("older", new Dictionary<string, string>(), first.DataDirectory);
        older.Start();
        Assert.Equal(DatabaseNewerException.ExitCode, await older.WaitForExitAsync(seconds: 60));
        var line = Assert.Single(older.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.Contains(Newer, line);
        Assert.Contains("newer version of CertPortal", line);
        Assert.Equal(history, Sql(file, "SELECT group_concat(\"MigrationId\", ',') FROM (SELECT \"MigrationId\" FROM \"__EFMigrationsHistory\" ORDER BY 1)"));

        // The same database without the newer migration serves again.
        Sql(file, $"DELETE FROM \"__EFMigrationsHistory\" WHERE \"MigrationId\" = '{Newer}'");
        await using var again = new CertPortalNode("again", new Dictionary<string, string>(), first.DataDirectory);
        again.Start();
        await again.WaitReadyAsync();
    }

    private static string? Sql(string file, string sql)
    {
        using var connection = new SqliteConnection($"Data Source={file};Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar()?.ToString();
    }
}

public sealed class PostgresDatabaseNewerTests(PostgresApp app) : IClassFixture<PostgresApp>
{
    [Fact]
    public async Task A_node_older_than_its_postgresql_database_does_not_join_it()
    {
        const string newer = "29991231000000_FromANewerVersion";
        var connectionString = app.Service<CertPortalOptions>().Database.ConnectionString!;
        await using var database = NpgsqlDataSource.Create(connectionString);
        await using (var insert = database.CreateCommand($"INSERT INTO \"__EFMigrationsHistory\" (\"MigrationId\", \"ProductVersion\") VALUES ('{newer}', '99.0.0')"))
            await insert.ExecuteNonQueryAsync();
        var dataDirectory = TempDir.Create("certportal-older-node");
        try
        {
            // A second node on the running one's database, started the way the service's entry point starts it.
            var builder = WebApplication.CreateBuilder(new WebApplicationOptions
            {
                Args = [$"--CertPortal:DataDirectory={dataDirectory}", $"--CertPortal:AdminApiKey={CertPortalApp.AdminKey}",
                    "--CertPortal:Ca:KeyPassphrase=test-ca-passphrase-0123", "--CertPortal:Database:Provider=Postgres",
                    $"--CertPortal:Database:ConnectionString={connectionString}", "--Logging:LogLevel:Default=Warning"],
            });
            builder.AddCertPortal();
            await using var older = builder.Build();
            var refused = await Assert.ThrowsAsync<DatabaseNewerException>(older.InitializeCertPortalAsync);
            Assert.Equal([newer], refused.UnknownMigrations);
        }
        finally
        {
            TempDir.Delete(dataDirectory);
            await using var delete = database.CreateCommand($"DELETE FROM \"__EFMigrationsHistory\" WHERE \"MigrationId\" = '{newer}'");
            await delete.ExecuteNonQueryAsync();
        }
        Assert.Equal(HttpStatusCode.OK, (await app.Client.GetAsync("/healthz")).StatusCode);
    }
}
