using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Tests.Data;

/// <summary><see cref="DatabaseErrors.IsUniqueViolation"/> against the real providers' errors: a
/// duplicate primary key or unique index counts, a foreign-key violation does not (so it propagates
/// instead of being taken for a duplicate approval).</summary>
public sealed class DatabaseErrorsTests(PostgresServer postgres) : IClassFixture<PostgresServer>, IDisposable
{
    private readonly string _dir = TempDir.Create("db-errors");

    public void Dispose() => TempDir.Delete(_dir);

    [Fact]
    public Task Sqlite_errors() => CheckAsync(() => new SqliteCertPortalDbContext(
        new DbContextOptionsBuilder<SqliteCertPortalDbContext>().UseSqlite($"Data Source={Path.Combine(_dir, "errors.db")};Pooling=False").Options));

    [Fact]
    public Task Postgresql_errors() => CheckAsync(() => new NpgsqlCertPortalDbContext(
        new DbContextOptionsBuilder<NpgsqlCertPortalDbContext>().UseNpgsql(postgres.ConnectionString("db_errors")).Options));

    private static async Task CheckAsync(Func<CertPortalDbContext> newContext)
    {
        await using (var db = newContext()) await db.Database.MigrateAsync();
        var now = DateTimeOffset.UtcNow;
        var account = new Account { Id = Guid.NewGuid(), Name = "errors-" + Guid.NewGuid().ToString("N")[..8], Role = "auditor", CreatedAt = now };
        var hash = Guid.NewGuid().ToByteArray();
        await using (var db = newContext())
        {
            db.Accounts.Add(account);
            db.EnrollmentTokens.Add(Token(hash, now));
            await db.SaveChangesAsync();
        }

        Assert.True(await FailsAsUniqueViolation(newContext, db => db.Accounts.Add(new Account { Id = account.Id, Name = account.Name + "x", Role = "auditor", CreatedAt = now })));
        Assert.True(await FailsAsUniqueViolation(newContext, db => db.EnrollmentTokens.Add(Token(hash, now))));
        Assert.False(await FailsAsUniqueViolation(newContext,
            db => db.RecoveryApprovals.Add(new RecoveryApproval { RequestId = Guid.NewGuid(), AgentId = Guid.NewGuid(), ApprovedAt = now })));
    }

    private static EnrollmentToken Token(byte[] hash, DateTimeOffset now) => new()
    {
        Id = Guid.NewGuid(), TokenHash = hash, Email = "errors@example.test", CreatedAt = now, ExpiresAt = now.AddHours(1), CreatedBy = "test",
    };

    private static async Task<bool> FailsAsUniqueViolation(Func<CertPortalDbContext> newContext, Action<CertPortalDbContext> change)
    {
        await using var db = newContext();
        change(db);
        var e = await Assert.ThrowsAsync<DbUpdateException>(() => db.SaveChangesAsync());
        return DatabaseErrors.IsUniqueViolation(e);
    }
}
