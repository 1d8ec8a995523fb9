using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace CertPortal.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class FewerWriterPages : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_AuditEvents_At",
                table: "AuditEvents");

            // SQLite's own DROP COLUMN (3.35+), inside the migration's transaction. EF Core's DropColumn rebuilds the table
            // instead, behind a `PRAGMA foreign_keys = 0` that cannot run in a transaction: the migration then commits in
            // parts, and a crash between them left a database that the next start could not migrate (the index dropped,
            // the migration not recorded). Nothing indexes or references the column since NoFingerprintIndex.
            migrationBuilder.Sql("ALTER TABLE \"Certificates\" DROP COLUMN \"Sha256Fingerprint\";");

            migrationBuilder.CreateIndex(
                name: "IX_AuditEvents_SignIns",
                table: "AuditEvents",
                columns: new[] { "Actor", "At" },
                filter: "\"Action\" IN ('account.sign-in-failed', 'account.signed-in')");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_AuditEvents_SignIns",
                table: "AuditEvents");

            // SQLite has no SHA-256 in SQL: going back leaves the fingerprints empty (the application no longer reads them).
            migrationBuilder.AddColumn<string>(
                name: "Sha256Fingerprint",
                table: "Certificates",
                type: "TEXT",
                maxLength: 64,
                nullable: false,
                defaultValue: "");

            migrationBuilder.CreateIndex(
                name: "IX_AuditEvents_At",
                table: "AuditEvents",
                column: "At");
        }
    }
}
