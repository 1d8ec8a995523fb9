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

            migrationBuilder.DropColumn(
                name: "Sha256Fingerprint",
                table: "Certificates");

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
