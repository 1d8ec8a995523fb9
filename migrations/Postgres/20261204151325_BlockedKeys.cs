using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace CertPortal.Migrations.Postgres
{
    /// <inheritdoc />
    public partial class BlockedKeys : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "SpkiSha256",
                table: "Certificates",
                type: "character varying(64)",
                maxLength: 64,
                nullable: true);

            migrationBuilder.CreateTable(
                name: "BlockedKeys",
                columns: table => new
                {
                    SpkiSha256 = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: false),
                    KeyAlgorithm = table.Column<string>(type: "character varying(16)", maxLength: 16, nullable: false),
                    BlockedAt = table.Column<DateTimeOffset>(type: "timestamp with time zone", nullable: false),
                    BlockedBy = table.Column<string>(type: "character varying(128)", maxLength: 128, nullable: false),
                    Source = table.Column<string>(type: "character varying(128)", maxLength: 128, nullable: false),
                    Comment = table.Column<string>(type: "character varying(512)", maxLength: 512, nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_BlockedKeys", x => x.SpkiSha256);
                });

            migrationBuilder.CreateIndex(
                name: "IX_Certificates_SpkiSha256",
                table: "Certificates",
                column: "SpkiSha256");

            migrationBuilder.CreateIndex(
                name: "IX_BlockedKeys_BlockedAt",
                table: "BlockedKeys",
                column: "BlockedAt");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "BlockedKeys");

            migrationBuilder.DropIndex(
                name: "IX_Certificates_SpkiSha256",
                table: "Certificates");

            migrationBuilder.DropColumn(
                name: "SpkiSha256",
                table: "Certificates");
        }
    }
}
