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
            "IX_Certificates_Email",            // the recipient look-up, the console
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
