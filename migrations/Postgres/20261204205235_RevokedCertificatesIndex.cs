using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace CertPortal.Migrations.Postgres
{
    /// <inheritdoc />
    public partial class RevokedCertificatesIndex : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateIndex(
                name: "IX_Certificates_Revoked",
                table: "Certificates",
                columns: new[] { "SerialNumber", "RevokedAt", "RevocationReason", "NotAfter" },
                filter: "\"RevokedAt\" IS NOT NULL");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_Certificates_Revoked",
                table: "Certificates");
        }
    }
}
