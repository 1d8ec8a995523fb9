using System.Net;
using CertPortal.Tests.Gal;
using CertPortal.Tests.Infrastructure;
using Npgsql;

namespace CertPortal.Tests.Postgres;

/// <summary>CertPortal on PostgreSQL publishing to its own slapd.</summary>
public sealed class PostgresDirectoryApp : DirectoryApp
{
    public PostgresServer Server { get; } = new();
    private readonly string _database = "certportal_" + Guid.NewGuid().ToString("N")[..8];

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>(base.Settings)
    {
        ["Database:Provider"] = "Postgres",
        ["Database:ConnectionString"] = Server.ConnectionString(_database),
    };

    public override async Task InitializeAsync()
    {
        await Server.InitializeAsync();
        await base.InitializeAsync();
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await Server.DisposeAsync();
    }
}

public sealed class PostgresDirectoryOutboxTests(PostgresDirectoryApp app) : IClassFixture<PostgresDirectoryApp>
{
    [Fact]
    public async Task A_changes_outbox_row_travels_with_the_groups_other_writes_and_the_directory_follows()
    {
        var email = $"outbox.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var database = new NpgsqlConnectionStringBuilder(app.Service<CertPortalOptions>().Database.ConnectionString).Database!;
        await using var commands = new PostgresWriterTests.NpgsqlCommands(database);

        var (cert, _) = await app.IssueAsync(email, "signing");
        await app.WaitForDirectoryAsync();
        Assert.Single(app.PublishedCertificates(email));
        Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(cert.SerialNumber, "superseded")).StatusCode);
        await app.WaitForDirectoryAsync();
        Assert.Empty(app.PublishedCertificates(email));

        // The enrollment's two rows (issued, expiry) and the revocation's one went in the batch of the group's writes that ends
        // with its COMMIT, not in a save of their own (a round trip for the held-back writes, then one for EF Core's insert).
        bool WithTheWrites(string text, string write) => text.Contains(write, StringComparison.Ordinal) &&
            text.Contains("INSERT INTO \"DirectoryPublications\"", StringComparison.Ordinal) &&
            text.LastIndexOf("COMMIT", StringComparison.Ordinal) > text.LastIndexOf("INSERT INTO", StringComparison.Ordinal);
        Assert.Contains(commands.Texts, t => WithTheWrites(t, "INSERT INTO \"Certificates\""));
        Assert.Contains(commands.Texts, t => WithTheWrites(t, "UPDATE \"Certificates\" SET \"RevokedAt\""));
    }
}
