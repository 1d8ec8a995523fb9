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
        await using var a = new CertPortalNode("a", settings);
        a.Start();
        await a.WaitReadyAsync();
        await using var b = new CertPortalNode("b", settings);
        b.Start();
        await b.WaitReadyAsync();
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
