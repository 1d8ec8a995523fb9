using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace CertPortal.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class DirectoryEnrollmentRuns : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "DirectoryEnrollmentRuns",
                columns: table => new
                {
                    Id = table.Column<long>(type: "INTEGER", nullable: false)
                        .Annotation("Sqlite:Autoincrement", true),
                    StartedAt = table.Column<long>(type: "INTEGER", nullable: false),
                    StartedBy = table.Column<string>(type: "TEXT", maxLength: 128, nullable: false),
                    DryRun = table.Column<bool>(type: "INTEGER", nullable: false),
                    FinishedAt = table.Column<long>(type: "INTEGER", nullable: true),
                    Found = table.Column<int>(type: "INTEGER", nullable: false),
                    AlreadyEnrolled = table.Column<int>(type: "INTEGER", nullable: false),
                    RecentlyInvited = table.Column<int>(type: "INTEGER", nullable: false),
                    Invited = table.Column<int>(type: "INTEGER", nullable: false),
                    Failed = table.Column<int>(type: "INTEGER", nullable: false),
                    Deferred = table.Column<int>(type: "INTEGER", nullable: false),
                    Error = table.Column<string>(type: "TEXT", maxLength: 1000, nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_DirectoryEnrollmentRuns", x => x.Id);
                });

            migrationBuilder.CreateIndex(
                name: "IX_DirectoryEnrollmentRuns_StartedAt",
                table: "DirectoryEnrollmentRuns",
                column: "StartedAt");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "DirectoryEnrollmentRuns");
        }
    }
}
