using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace CertPortal.Migrations.Postgres
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

            migrationBuilder.AddColumn<string>(
                name: "Sha256Fingerprint",
                table: "Certificates",
                type: "character varying(64)",
                maxLength: 64,
                nullable: false,
                defaultValue: "");

            // Made again from the DER, as the application made it (upper-case hex).
            migrationBuilder.Sql("UPDATE \"Certificates\" SET \"Sha256Fingerprint\" = upper(encode(sha256(\"Der\"), 'hex'))");

            migrationBuilder.CreateIndex(
                name: "IX_AuditEvents_At",
                table: "AuditEvents",
                column: "At");
        }
    }
}
