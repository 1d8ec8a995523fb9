using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace CertPortal.Migrations.Postgres
{
    /// <inheritdoc />
    public partial class EmailLowerIndex : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_Certificates_Email",
                table: "Certificates");

            // Mailboxes compare without regard to case: the look-up asks lower("Email") = @key, which a plain index on "Email"
            // cannot answer (a table scan per cache miss). EF Core's model has no expression indexes, hence SQL.
            migrationBuilder.Sql("CREATE INDEX \"IX_Certificates_EmailLower\" ON \"Certificates\" (lower(\"Email\"));");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("DROP INDEX \"IX_Certificates_EmailLower\";");

            migrationBuilder.CreateIndex(
                name: "IX_Certificates_Email",
                table: "Certificates",
                column: "Email");
        }
    }
}
