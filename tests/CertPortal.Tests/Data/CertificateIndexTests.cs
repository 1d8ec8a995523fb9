using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Data;

/// <summary>Every index of Certificates is one more B-tree page the group writer writes per issued certificate (a random
/// key such as a hash lands on a page of its own), inside the turn that issuances share one at a time. Each one here is
/// there for a reader; the SHA-256 fingerprint has none (nothing looks a certificate up by it, and it is unique because
/// the serial it hashes over is). Nor is the fingerprint stored: made from the DER when shown, it leaves a row small enough
/// for four to a 4 KiB page.</summary>
public sealed class CertificateIndexTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Fact]
    public async Task Certificates_are_indexed_only_for_what_reads_them()
    {
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var indexes = await db.Database.SqlQueryRaw<string>(
            "SELECT name AS \"Value\" FROM sqlite_master WHERE type = 'index' AND tbl_name = 'Certificates' ORDER BY name").ToListAsync();
        Assert.Equal(
        [
            "IX_Certificates_EmailLower",       // lower("Email"): the recipient look-up, the directory entry, the enrollment page
            "IX_Certificates_RenewalOf",        // one renewal per certificate
            "IX_Certificates_Revoked",          // the CRL signer
            "IX_Certificates_SpkiSha256",       // keyCompromise: the key's other certificates
            "IX_Certificates_TokenId",          // one certificate per token; a retry collects it
            "sqlite_autoindex_Certificates_1",  // the serial number (primary key)
        ], indexes);

        var columns = await db.Database.SqlQueryRaw<string>("SELECT name AS \"Value\" FROM pragma_table_info('Certificates')").ToListAsync();
        Assert.DoesNotContain("Sha256Fingerprint", columns);

        // The API still shows the fingerprint, made from the DER.
        var (issued, _) = await app.IssueAsync($"index.{Guid.NewGuid():N}@example.test", "signing");
        using var certificate = System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(issued.CertificatePem);
        var shown = await app.Client.GetFromJsonAsync<JsonElement>($"/api/v1/certificates/{issued.SerialNumber}");
        Assert.Equal(Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(certificate.RawData)), shown.GetProperty("sha256Fingerprint").GetString());
    }

    [Fact]
    public async Task A_mailbox_s_certificates_are_read_through_the_index_on_its_lower_case_not_by_a_scan()
    {
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var definition = await db.Database.SqlQueryRaw<string>(
            "SELECT sql AS \"Value\" FROM sqlite_master WHERE name = 'IX_Certificates_EmailLower'").SingleAsync();
        Assert.Equal("CREATE INDEX \"IX_Certificates_EmailLower\" ON \"Certificates\" (lower(\"Email\"))", definition);

        // The look-up's cache miss as EF Core sends it (a gateway asking for an unknown recipient), and the one-mailbox query
        // the directory entry and the enrollment page make: each through the index, where lower("Email") against a plain
        // index on "Email" scanned every certificate.
        var now = DateTimeOffset.UtcNow;
        Assert.Contains(await SqlitePlans.PlanAsync(db, CertPortal.Gal.RecipientCache.ValidOf(db, "nobody@example.test", now)),
            d => d.Contains("USING INDEX IX_Certificates_EmailLower (<expr>=?)", StringComparison.Ordinal));
        Assert.Contains(await SqlitePlans.PlanAsync(db, db.Certificates.OfMailbox("Nobody@Example.test").Where(c => c.Email == "Nobody@Example.test" && c.RevokedAt == null)),
            d => d.Contains("USING INDEX IX_Certificates_EmailLower (<expr>=?)", StringComparison.Ordinal));

        // And it finds a mailbox's certificates whatever the case it is asked in.
        var mailbox = $"Case.{Guid.NewGuid():N}@example.test";
        var (issued, _) = await app.IssueAsync(mailbox, "signing");
        Assert.Equal([issued.SerialNumber], await db.Certificates.OfMailbox(mailbox.ToUpperInvariant()).Select(c => c.SerialNumber).ToListAsync());
    }

    [Fact]
    public async Task A_certificate_issued_later_has_a_serial_that_sorts_after_the_earlier_ones()
    {
        // Serials begin with their time of issue: the primary key's index takes each new certificate at its right edge, one
        // page for a group of enrollments, where a random serial sent every insert to a page of its own.
        var (first, _) = await app.IssueAsync($"order.{Guid.NewGuid():N}@example.test", "signing");
        await Task.Delay(2);
        var (second, _) = await app.IssueAsync($"order.{Guid.NewGuid():N}@example.test", "signing");
        Assert.True(string.CompareOrdinal(first.SerialNumber, second.SerialNumber) < 0, $"{first.SerialNumber} then {second.SerialNumber}");
    }
}
