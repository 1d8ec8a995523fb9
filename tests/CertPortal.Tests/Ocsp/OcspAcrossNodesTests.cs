using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using CertPortal.Authority;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Ocsp;

/// <summary>Two node processes on one PostgreSQL database: both answer OCSP with the same delegated signing
/// certificate, and the node that did not make a change answers with it within the change log's poll interval,
/// though it had the previous answer cached.</summary>
public sealed class OcspAcrossNodesTests(PostgresServer postgres) : IClassFixture<PostgresServer>
{
    // Lookup:PollInterval plus the poll's query and scheduling on a busy machine.
    private const double BoundSeconds = 0.5 + 1.5;

    [Fact]
    public async Task A_node_that_did_not_make_the_change_answers_with_it_within_the_poll_interval()
    {
        Tool.Require("openssl", "openssl");
        var settings = new Dictionary<string, string>
        {
            ["Database:Provider"] = "Postgres",
            ["Database:ConnectionString"] = postgres.ConnectionString("ocsp_" + Guid.NewGuid().ToString("N")[..8]),
            ["Lookup:PollInterval"] = "00:00:00.5",
            // The test places a hold, which the BR allow only for multipurpose (not strict) certificates.
            ["Issuance:PolicyOids:0"] = Oids.PolicyMailboxValidatedMultipurpose,
        };
        await using var a = await CertPortalNode.StartedAsync("a", settings);
        await using var b = await CertPortalNode.StartedAsync("b", settings);
        using var adminA = a.Client(admin: true);
        using var clientA = a.Client();
        using var clientB = b.Client();

        const string email = "ocsp.nodes@example.test";
        var t = await adminA.PostAsJsonAsync("/api/v1/tokens", new { email, displayName = "Nodes", profile = "signing", validHours = 1 });
        await Http.EnsureStatus(t, HttpStatusCode.Created);
        var token = (await t.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("token").GetString();
        var e = await clientA.PostAsJsonAsync("/api/v1/enrollments", new { token, csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email) });
        await Http.EnsureStatus(e, HttpStatusCode.Created);
        var issued = await e.Content.ReadFromJsonAsync<JsonElement>();
        var serial = issued.GetProperty("serialNumber").GetString()!;

        using var issuing = X509CertificateLoader.LoadCertificate(await clientB.GetByteArrayAsync("/ca/issuing.crt"));
        var path = OcspProbe.GetPath(OcspProbe.Request(issuing, serial));
        var (fromA, basicA) = OcspProbe.Read(await clientA.GetByteArrayAsync(path));
        var (fromB, basicB) = OcspProbe.Read(await clientB.GetByteArrayAsync(path));
        Assert.Equal("good", OcspProbe.Describe(fromA));
        Assert.Equal("good", OcspProbe.Describe(fromB));
        // One responder certificate for the cluster, made once and shared through the database.
        Assert.Equal(basicA.GetCerts()[0].GetEncoded(), basicB.GetCerts()[0].GetEncoded());
        var cached = await clientB.GetByteArrayAsync(path);
        Assert.Equal(cached, await clientB.GetByteArrayAsync(path)); // answered from b's memory

        await Http.EnsureStatus(await adminA.PostAsJsonAsync($"/api/v1/certificates/{serial}/revoke", new { reason = "certificateHold" }), HttpStatusCode.OK);
        await WithinBoundAsync(clientB, path, "revoked:6");
        await Http.EnsureStatus(await adminA.PostAsync($"/api/v1/certificates/{serial}/release", null), HttpStatusCode.OK);
        await WithinBoundAsync(clientB, path, "good");
        await Http.EnsureStatus(await adminA.PostAsJsonAsync($"/api/v1/certificates/{serial}/revoke", new { reason = "keyCompromise" }), HttpStatusCode.OK);
        await WithinBoundAsync(clientB, path, "revoked:1");

        // And as OpenSSL sees it, asking node b.
        using var dir = new ToolDir("ocsp-nodes");
        var leaf = dir.Write("leaf.pem", issued.GetProperty("certificatePem").GetString()!);
        var issuingFile = dir.Write("issuing.pem", issuing.ExportCertificatePem() + "\n");
        var rootFile = dir.Write("root.pem", await clientB.GetStringAsync("/ca/root.pem"));
        var openssl = Tool.Run("openssl", ["ocsp", "-issuer", issuingFile, "-cert", leaf, "-url", b.BaseUrl + "/ocsp", "-CAfile", rootFile]);
        Assert.True(openssl.Output.Contains("Response verify OK") && openssl.Stdout.Contains("Reason: keyCompromise"), openssl.Output);
    }

    [Fact]
    public async Task A_change_committed_long_after_a_later_one_still_reaches_the_other_node()
    {
        // A revoking transaction that took its change id, then took longer than the old 10 s wait for ids skipped over to
        // commit (a long key block, a stalled node) while other changes committed after it: the other node must still see it.
        var database = "ocsp_late_" + Guid.NewGuid().ToString("N")[..8];
        var settings = new Dictionary<string, string>
        {
            ["Database:Provider"] = "Postgres",
            ["Database:ConnectionString"] = postgres.ConnectionString(database),
            ["Lookup:PollInterval"] = "00:00:00.5",
        };
        await using var a = await CertPortalNode.StartedAsync("a", settings);
        await using var b = await CertPortalNode.StartedAsync("b", settings);
        using var adminA = a.Client(admin: true);
        using var clientA = a.Client();
        using var clientB = b.Client();

        async Task<string> EnrollAsync(string email)
        {
            var t = await adminA.PostAsJsonAsync("/api/v1/tokens", new { email, displayName = "Late", profile = "signing", validHours = 1 });
            await Http.EnsureStatus(t, HttpStatusCode.Created);
            var token = (await t.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("token").GetString();
            var e = await clientA.PostAsJsonAsync("/api/v1/enrollments", new { token, csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email) });
            await Http.EnsureStatus(e, HttpStatusCode.Created);
            return (await e.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("serialNumber").GetString()!;
        }
        var email = $"late.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var serial = await EnrollAsync(email);
        using var issuing = X509CertificateLoader.LoadCertificate(await clientB.GetByteArrayAsync("/ca/issuing.crt"));
        var path = OcspProbe.GetPath(OcspProbe.Request(issuing, serial));
        var lookup = $"/api/v1/directory/{Uri.EscapeDataString(email)}/certificates";
        for (var i = 0; i < 2; i++)
        {
            Assert.Equal("good", OcspProbe.Describe(OcspProbe.Read(await clientB.GetByteArrayAsync(path)).Answer));
            Assert.Contains(serial, await clientB.GetStringAsync(lookup));
        }

        await using var slow = new Npgsql.NpgsqlConnection(postgres.ConnectionString(database));
        await slow.OpenAsync();
        await using var transaction = await slow.BeginTransactionAsync();
        await using (var revoke = new Npgsql.NpgsqlCommand(
            "UPDATE \"Certificates\" SET \"RevokedAt\" = now(), \"RevocationReason\" = 'KeyCompromise' WHERE \"SerialNumber\" = @serial; " +
            "INSERT INTO \"CertificateChanges\" (\"Email\", \"At\") VALUES (@email, now());", slow, transaction))
        {
            revoke.Parameters.AddWithValue("serial", serial);
            revoke.Parameters.AddWithValue("email", email.ToLowerInvariant());
            await revoke.ExecuteNonQueryAsync();
        }
        await EnrollAsync($"after.{Guid.NewGuid().ToString("N")[..8]}@example.test"); // a later change id, committed first
        await Task.Delay(TimeSpan.FromSeconds(12));
        await transaction.CommitAsync();

        await WithinBoundAsync(clientB, path, "revoked:1");
        var clock = Stopwatch.StartNew();
        // 404 once the mailbox has no valid certificate left.
        while (await clientB.GetAsync(lookup) is { StatusCode: HttpStatusCode.OK } listed && (await listed.Content.ReadAsStringAsync()).Contains(serial, StringComparison.Ordinal))
        {
            Assert.True(clock.Elapsed.TotalSeconds < BoundSeconds, "node b's look-up still lists the revoked certificate");
            await Task.Delay(25);
        }
    }

    private static async Task WithinBoundAsync(HttpClient client, string path, string expected)
    {
        var clock = Stopwatch.StartNew();
        string seen;
        do
        {
            seen = OcspProbe.Describe(OcspProbe.Read(await client.GetByteArrayAsync(path)).Answer);
            if (seen == expected) return;
            await Task.Delay(25);
        }
        while (clock.Elapsed.TotalSeconds < BoundSeconds);
        Assert.Fail($"after {clock.Elapsed.TotalSeconds:F2} s node b still answers {seen}, expected {expected}");
    }
}
