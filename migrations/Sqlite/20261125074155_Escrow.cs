using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace CertPortal.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class Escrow : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "EscrowPolicy",
                columns: table => new
                {
                    Id = table.Column<int>(type: "INTEGER", nullable: false),
                    Threshold = table.Column<int>(type: "INTEGER", nullable: false),
                    EncryptionKeyGeneration = table.Column<string>(type: "TEXT", maxLength: 16, nullable: false),
                    DualKeyGeneration = table.Column<string>(type: "TEXT", maxLength: 16, nullable: false),
                    UpdatedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    UpdatedBy = table.Column<string>(type: "TEXT", maxLength: 128, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_EscrowPolicy", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "KeyEscrows",
                columns: table => new
                {
                    Id = table.Column<Guid>(type: "TEXT", nullable: false),
                    SerialNumber = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Threshold = table.Column<int>(type: "INTEGER", nullable: false),
                    Envelope = table.Column<byte[]>(type: "BLOB", nullable: false),
                    CreatedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    SupersededAt = table.Column<long>(type: "INTEGER", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_KeyEscrows", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "RecoveryAgents",
                columns: table => new
                {
                    Id = table.Column<Guid>(type: "TEXT", nullable: false),
                    AccountId = table.Column<Guid>(type: "TEXT", nullable: false),
                    Name = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    CertificateDer = table.Column<byte[]>(type: "BLOB", nullable: false),
                    CertificateSha256 = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    RegisteredAt = table.Column<long>(type: "INTEGER", nullable: false),
                    RetiredAt = table.Column<long>(type: "INTEGER", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_RecoveryAgents", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "RecoveryRequests",
                columns: table => new
                {
                    Id = table.Column<Guid>(type: "TEXT", nullable: false),
                    EscrowId = table.Column<Guid>(type: "TEXT", nullable: false),
                    SerialNumber = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Purpose = table.Column<string>(type: "TEXT", maxLength: 16, nullable: false),
                    Reason = table.Column<string>(type: "TEXT", maxLength: 256, nullable: false),
                    RequestedBy = table.Column<string>(type: "TEXT", maxLength: 128, nullable: false),
                    CreatedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    ExpiresAt = table.Column<long>(type: "INTEGER", nullable: false),
                    CompletedAt = table.Column<long>(type: "INTEGER", nullable: true),
                    CancelledAt = table.Column<long>(type: "INTEGER", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_RecoveryRequests", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "EscrowShares",
                columns: table => new
                {
                    Id = table.Column<Guid>(type: "TEXT", nullable: false),
                    EscrowId = table.Column<Guid>(type: "TEXT", nullable: false),
                    AgentId = table.Column<Guid>(type: "TEXT", nullable: false),
                    EncryptedShare = table.Column<byte[]>(type: "BLOB", nullable: false),
                    Commitment = table.Column<byte[]>(type: "BLOB", maxLength: 32, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_EscrowShares", x => x.Id);
                    table.ForeignKey(
                        name: "FK_EscrowShares_KeyEscrows_EscrowId",
                        column: x => x.EscrowId,
                        principalTable: "KeyEscrows",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "RecoveryApprovals",
                columns: table => new
                {
                    RequestId = table.Column<Guid>(type: "TEXT", nullable: false),
                    AgentId = table.Column<Guid>(type: "TEXT", nullable: false),
                    ApprovedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    SealedShare = table.Column<byte[]>(type: "BLOB", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_RecoveryApprovals", x => new { x.RequestId, x.AgentId });
                    table.ForeignKey(
                        name: "FK_RecoveryApprovals_RecoveryRequests_RequestId",
                        column: x => x.RequestId,
                        principalTable: "RecoveryRequests",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "IX_EscrowShares_EscrowId_AgentId",
                table: "EscrowShares",
                columns: new[] { "EscrowId", "AgentId" },
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_KeyEscrows_SerialNumber",
                table: "KeyEscrows",
                column: "SerialNumber");

            migrationBuilder.CreateIndex(
                name: "IX_RecoveryAgents_AccountId",
                table: "RecoveryAgents",
                column: "AccountId");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "EscrowPolicy");

            migrationBuilder.DropTable(
                name: "EscrowShares");

            migrationBuilder.DropTable(
                name: "RecoveryAgents");

            migrationBuilder.DropTable(
                name: "RecoveryApprovals");

            migrationBuilder.DropTable(
                name: "KeyEscrows");

            migrationBuilder.DropTable(
                name: "RecoveryRequests");
        }
    }
}
