using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace CertPortal.Migrations.Postgres
{
    /// <inheritdoc />
    public partial class DirectoryEnrollmentWithdrawal : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<long>(
                name: "DirectoryEnrollmentRunId",
                table: "EnrollmentTokens",
                type: "bigint",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "RevokedBy",
                table: "EnrollmentTokens",
                type: "character varying(128)",
                maxLength: 128,
                nullable: true);

            migrationBuilder.AddColumn<int>(
                name: "Withdrawn",
                table: "DirectoryEnrollmentRuns",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            // Links mailed by scheduled runs before this column were made in the job's name, so they are known to be the job's (made by
            // the last scheduled run that started before them). Those of runs an administrator started carry the administrator's name,
            // as a token made by hand does, and stay treated as made by hand: never withdrawn by a run.
            migrationBuilder.Sql("""
                UPDATE "EnrollmentTokens" SET "DirectoryEnrollmentRunId" = (SELECT MAX(r."Id") FROM "DirectoryEnrollmentRuns" r
                    WHERE r."StartedBy" = 'schedule' AND NOT r."DryRun" AND r."StartedAt" <= "EnrollmentTokens"."CreatedAt")
                WHERE "CreatedBy" = 'directory-enrollment'
                """);

            migrationBuilder.CreateIndex(
                name: "IX_EnrollmentTokens_DirectoryEnrollmentRunId",
                table: "EnrollmentTokens",
                column: "DirectoryEnrollmentRunId",
                filter: "\"DirectoryEnrollmentRunId\" IS NOT NULL");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_EnrollmentTokens_DirectoryEnrollmentRunId",
                table: "EnrollmentTokens");

            migrationBuilder.DropColumn(
                name: "DirectoryEnrollmentRunId",
                table: "EnrollmentTokens");

            migrationBuilder.DropColumn(
                name: "RevokedBy",
                table: "EnrollmentTokens");

            migrationBuilder.DropColumn(
                name: "Withdrawn",
                table: "DirectoryEnrollmentRuns");
        }
    }
}
