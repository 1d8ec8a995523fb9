using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace CertPortal.Data;

// Used only by dotnet-ef to generate migrations (scripts/add-migration.sh); no database is contacted.
internal sealed class SqliteDesignTimeFactory : IDesignTimeDbContextFactory<SqliteCertPortalDbContext>
{
    public SqliteCertPortalDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<SqliteCertPortalDbContext>().UseSqlite("Data Source=design-time.db").Options);
}

internal sealed class NpgsqlDesignTimeFactory : IDesignTimeDbContextFactory<NpgsqlCertPortalDbContext>
{
    public NpgsqlCertPortalDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<NpgsqlCertPortalDbContext>().UseNpgsql("Host=localhost;Database=certportal_design").Options);
}
