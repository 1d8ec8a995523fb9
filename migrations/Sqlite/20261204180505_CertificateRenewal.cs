using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace CertPortal.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class CertificateRenewal : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "RenewalOf",
                table: "Certificates",
                type: "TEXT",
                maxLength: 64,
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "RenewedBy",
                table: "Certificates",
                type: "TEXT",
                maxLength: 64,
                nullable: true);

            migrationBuilder.CreateIndex(
                name: "IX_Certificates_RenewalOf",
                table: "Certificates",
                column: "RenewalOf",
                unique: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_Certificates_RenewalOf",
                table: "Certificates");

            migrationBuilder.DropColumn(
                name: "RenewalOf",
                table: "Certificates");

            migrationBuilder.DropColumn(
                name: "RenewedBy",
                table: "Certificates");
        }
    }
}
