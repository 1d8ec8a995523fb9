using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Http.Json;
using CertPortal.Authority;
using CertPortal.Tests.Infrastructure;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Revocation;

/// <summary>A large CRL downloaded by several clients at once costs Kestrel's memory pool a few buffers per download,
/// not a copy of the CRL each. Written as one array, Kestrel copied the whole body into its pool before sending, and
/// the pool kept that high-water mark: in the mixed memory run it grew with the CRL (25 MB of pinned blocks for eight
/// clients at 67,000 entries; docs/benchmark-history.md, memory pass nine).</summary>
public sealed class CrlDownloadMemoryTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    private const int Revoked = 40_000;
    private const int Clients = 4;

    [Fact]
    public async Task Concurrent_downloads_of_a_large_crl_allocate_less_pool_memory_than_one_copy_of_it()
    {
        await SeedRevokedAsync(Path.Combine(app.DataDirectory, "certportal.db"), Revoked);
        // A revocation signs the CRL before it returns (Crl:PublishDelay 0 in tests): it lists the seeded rows too.
        var (cert, _) = await app.IssueAsync("crl-download@example.test", "signing");
        var revoke = await app.Admin.PostAsJsonAsync($"/api/v1/certificates/{cert.SerialNumber}/revoke", new { reason = "superseded" });
        Assert.True(revoke.IsSuccessStatusCode, await revoke.Content.ReadAsStringAsync());
        var crl = await app.Client.GetByteArrayAsync("/crl/issuing.crl");
        Assert.True(crl.Length > Revoked * 40, $"the CRL is {crl.Length:N0} bytes");

        var meters = app.Services.GetRequiredService<IMeterFactory>();
        long allocated = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            // This host's pool only: other tests' services run in the same process.
            if (instrument.Meter.Name == "Microsoft.AspNetCore.MemoryPool" && instrument.Name == "aspnetcore.memory_pool.allocated" &&
                ReferenceEquals(instrument.Meter.Scope, meters))
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, bytes, _, _) => Interlocked.Add(ref allocated, bytes));
        listener.Start();

        for (var round = 0; round < 3; round++)
        {
            var bodies = await Task.WhenAll(Enumerable.Range(0, Clients).Select(async _ =>
            {
                using var client = new HttpClient { BaseAddress = new Uri(app.BaseUrl) };
                using var response = await client.GetAsync("/crl/issuing.crl");
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.Equal(crl.Length, response.Content.Headers.ContentLength);
                return await response.Content.ReadAsByteArrayAsync();
            }));
            foreach (var body in bodies) Assert.Equal(crl, body);
        }

        // Before: at least one CRL's bytes per download at once (Clients times 1.9 MB); now a few 4 KiB blocks each.
        Assert.True(Interlocked.Read(ref allocated) < crl.Length,
            $"Kestrel's memory pool allocated {allocated:N0} bytes for {Clients} concurrent downloads of a {crl.Length:N0}-byte CRL");
    }

    /// <summary>Revoked certificates written straight into the database (what the CRL reads: serial, times, reason), as
    /// CertPortal.Bench --crl does; issuing this many through the API would take minutes. MailboxValidatedAt is set as a real row
    /// has it (at or before issuance), not left to the column's default: year 1 is the migration's mark for a row no renewal chain
    /// reaches. The CRL does not read it; a listing or renewal of these rows would.</summary>
    private static async Task SeedRevokedAsync(string database, int n)
    {
        await using var connection = new SqliteConnection($"Data Source={database};Default Timeout=30;Pooling=False");
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await using var insert = connection.CreateCommand();
        insert.CommandText = """
            INSERT INTO "Certificates" ("SerialNumber", "Email", "DisplayName", "Profile", "KeyAlgorithm", "SubjectDn", "NotBefore", "NotAfter",
              "IssuedAt", "Der", "SpkiSha256", "RevokedAt", "RevocationReason", "MailboxValidatedAt")
            VALUES ($serial, $email, '', 'Signing', 'EC-P256', '', $notBefore, $notAfter, $notBefore, x'00', $spki, $revokedAt, 'KeyCompromise',
              $notBefore)
            """;
        var serial = insert.Parameters.Add("$serial", SqliteType.Text);
        var email = insert.Parameters.Add("$email", SqliteType.Text);
        var spki = insert.Parameters.Add("$spki", SqliteType.Text);
        var now = DateTimeOffset.UtcNow;
        insert.Parameters.AddWithValue("$notBefore", now.AddDays(-1).UtcTicks);
        insert.Parameters.AddWithValue("$notAfter", now.AddDays(365).UtcTicks);
        insert.Parameters.AddWithValue("$revokedAt", now.AddHours(-1).UtcTicks);
        for (var i = 0; i < n; i++)
        {
            serial.Value = SerialNumber.ToHex(SerialNumber.New(now));
            email.Value = $"seeded-revoked{i}@example.test";
            spki.Value = i.ToString("X64", System.Globalization.CultureInfo.InvariantCulture);
            await insert.ExecuteNonQueryAsync();
        }
        await tx.CommitAsync();
    }
}
