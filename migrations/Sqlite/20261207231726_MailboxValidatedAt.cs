using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace CertPortal.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class MailboxValidatedAt : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<long>(
                name: "MailboxValidatedAt",
                table: "Certificates",
                type: "INTEGER",
                nullable: false,
                defaultValue: 0L);

            // Rows from before this column: a certificate enrolled with a token was validated when that token was made (as new
            // ones are); one whose token row is gone, at its own notBefore (when the link was spent at the latest). A renewal
            // takes the value of the root of its chain, as renewals now carry it: taking its own notBefore would have given every
            // existing chain a fresh validation and let it renew on for another reuse period. A row no chain reaches (none should
            // exist) keeps the column's default, the year 1: a renewal of it is refused and its holder enrols again.
            migrationBuilder.Sql("""
                WITH RECURSIVE "Chain" ("SerialNumber", "ValidatedAt") AS (
                    SELECT c."SerialNumber", COALESCE(t."CreatedAt", c."NotBefore")
                    FROM "Certificates" AS c LEFT JOIN "EnrollmentTokens" AS t ON t."Id" = c."TokenId"
                    WHERE c."RenewalOf" IS NULL
                    UNION ALL
                    SELECT c."SerialNumber", "Chain"."ValidatedAt"
                    FROM "Certificates" AS c JOIN "Chain" ON c."RenewalOf" = "Chain"."SerialNumber")
                UPDATE "Certificates" SET "MailboxValidatedAt" = "Chain"."ValidatedAt"
                FROM "Chain" WHERE "Chain"."SerialNumber" = "Certificates"."SerialNumber"
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(
                name: "MailboxValidatedAt",
                table: "Certificates");
        }
    }
}
