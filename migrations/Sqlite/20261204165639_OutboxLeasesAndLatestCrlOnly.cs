using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace CertPortal.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class OutboxLeasesAndLatestCrlOnly : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<long>(
                name: "LeaseExpiresAt",
                table: "DirectoryPublications",
                type: "INTEGER",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "LeasedBy",
                table: "DirectoryPublications",
                type: "TEXT",
                maxLength: 64,
                nullable: true);

            migrationBuilder.CreateTable(
                name: "CrlChanges",
                columns: table => new
                {
                    Id = table.Column<long>(type: "INTEGER", nullable: false)
                        .Annotation("Sqlite:Autoincrement", true),
                    Authority = table.Column<string>(type: "TEXT", maxLength: 16, nullable: false),
                    At = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_CrlChanges", x => x.Id);
                });

            // Only the latest CRL of each CA is kept from now on (CrlPublisher deletes the one it replaces):
            // drop the copies earlier versions stored for every revocation.
            migrationBuilder.Sql("""
                DELETE FROM "Crls" WHERE "Number" < (SELECT MAX(c."Number") FROM "Crls" c WHERE c."Authority" = "Crls"."Authority");
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "CrlChanges");

            migrationBuilder.DropColumn(
                name: "LeaseExpiresAt",
                table: "DirectoryPublications");

            migrationBuilder.DropColumn(
                name: "LeasedBy",
                table: "DirectoryPublications");
        }
    }
}
