using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace CertPortal.Migrations.Postgres
{
    /// <inheritdoc />
    public partial class PartialTokenAndRenewalIndexes : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_Certificates_RenewalOf",
                table: "Certificates");

            migrationBuilder.DropIndex(
                name: "IX_Certificates_TokenId",
                table: "Certificates");

            migrationBuilder.CreateIndex(
                name: "IX_Certificates_RenewalOf",
                table: "Certificates",
                column: "RenewalOf",
                unique: true,
                filter: "\"RenewalOf\" IS NOT NULL");

            migrationBuilder.CreateIndex(
                name: "IX_Certificates_TokenId",
                table: "Certificates",
                column: "TokenId",
                unique: true,
                filter: "\"TokenId\" IS NOT NULL");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_Certificates_RenewalOf",
                table: "Certificates");

            migrationBuilder.DropIndex(
                name: "IX_Certificates_TokenId",
                table: "Certificates");

            migrationBuilder.CreateIndex(
                name: "IX_Certificates_RenewalOf",
                table: "Certificates",
                column: "RenewalOf",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_Certificates_TokenId",
                table: "Certificates",
                column: "TokenId",
                unique: true);
        }
    }
}
