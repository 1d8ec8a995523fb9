using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace CertPortal.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class DeltaCrlChanges : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<long>(
                name: "InDelta",
                table: "CrlChanges",
                type: "INTEGER",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "SerialNumber",
                table: "CrlChanges",
                type: "TEXT",
                maxLength: 64,
                nullable: true);

            // Delta CRLs signed before this version deleted the changes they showed, so the rows since the latest complete
            // CRL may not name everything since it: a change of unknown scope per CA that has a CRL makes the delta CRLs
            // until the next complete CRL read every revoked row, as they did (UTC ticks, as SqliteCertPortalDbContext stores times).
            migrationBuilder.Sql("INSERT INTO \"CrlChanges\" (\"Authority\", \"At\") SELECT DISTINCT \"Authority\", strftime('%s', 'now') * 10000000 + 621355968000000000 FROM \"Crls\"");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "InDelta",
                table: "CrlChanges");

            migrationBuilder.DropColumn(
                name: "SerialNumber",
                table: "CrlChanges");
        }
    }
}
