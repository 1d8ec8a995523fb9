using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Api;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Cluster;

/// <summary>Two node processes on one PostgreSQL database, with a long Crl:PublishDelay: the node that made a revocation waits
/// out the delay before signing, but serves the CRL another node signed for it meanwhile within Crl:CheckInterval.</summary>
public sealed class CrlAcrossNodesTests(PostgresServer postgres) : IClassFixture<PostgresServer>
{
    [Fact]
    public async Task The_node_waiting_out_its_publish_delay_serves_the_crl_another_node_signed_meanwhile()
    {
        var settings = new Dictionary<string, string>
        {
            ["Database:Provider"] = "Postgres",
            ["Database:ConnectionString"] = postgres.ConnectionString("crl_nodes_" + Guid.NewGuid().ToString("N")[..8]),
            ["Crl:PublishDelay"] = "00:00:08",
            ["Crl:CheckInterval"] = "00:00:01",
        };
        await using var a = await CertPortalNode.StartedAsync("a", settings);
        await using var b = await CertPortalNode.StartedAsync("b", settings);
        using var adminA = a.Client(admin: true);
        using var clientA = a.Client();
        using var clientB = b.Client();

        const string email = "crl.nodes@example.test";
        var t = await adminA.PostAsJsonAsync("/api/v1/tokens", new { email, displayName = "Nodes", profile = "signing", validHours = 1 });
        await Http.EnsureStatus(t, HttpStatusCode.Created);
        var token = (await t.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("token").GetString();
        var e = await clientA.PostAsJsonAsync("/api/v1/enrollments", new { token, csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email) });
        await Http.EnsureStatus(e, HttpStatusCode.Created);
        var serial = (await e.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("serialNumber").GetString()!;

        async Task<ParsedCrl> CrlAsync(HttpClient client) => ParsedCrl.Parse(await client.GetByteArrayAsync("/crl/issuing.crl"));
        await Http.EnsureStatus(await adminA.PostAsJsonAsync($"/api/v1/certificates/{serial}/revoke", new { reason = "keyCompromise" }), HttpStatusCode.OK);

        // Node b, which made no change, signs it at its next check; node a is still inside its 8 s publish delay.
        var clock = Stopwatch.StartNew();
        ParsedCrl fromB;
        while (!(fromB = await CrlAsync(clientB)).Entries.ContainsKey(serial))
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), "node b did not sign the revocation at its next check");
            await Task.Delay(50);
        }
        clock.Restart();
        while ((await CrlAsync(clientA)).Number < fromB.Number)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(3.5), "node a still serves its previous CRL (its publish delay is 8 s)");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task A_client_revalidating_a_crl_another_node_signed_gets_304_not_this_nodes_older_crl()
    {
        var database = postgres.ConnectionString("crl_etag_" + Guid.NewGuid().ToString("N")[..8]);
        // Node a looks for other nodes' CRLs only every 10 minutes; node b signs before its revocation call returns.
        await using var a = await CertPortalNode.StartedAsync("a", new Dictionary<string, string>
        {
            ["Database:Provider"] = "Postgres", ["Database:ConnectionString"] = database, ["Crl:CheckInterval"] = "00:10:00",
        });
        await using var b = await CertPortalNode.StartedAsync("b", new Dictionary<string, string>
        {
            ["Database:Provider"] = "Postgres", ["Database:ConnectionString"] = database, ["Crl:PublishDelay"] = "00:00:00",
        });
        using var adminB = b.Client(admin: true);
        using var clientA = a.Client();
        using var clientB = b.Client();

        const string email = "crl.etag@example.test";
        var t = await adminB.PostAsJsonAsync("/api/v1/tokens", new { email, displayName = "ETag", profile = "signing", validHours = 1 });
        await Http.EnsureStatus(t, HttpStatusCode.Created);
        var token = (await t.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("token").GetString();
        var e = await clientB.PostAsJsonAsync("/api/v1/enrollments", new { token, csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email) });
        await Http.EnsureStatus(e, HttpStatusCode.Created);
        var serial = (await e.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("serialNumber").GetString()!;
        var before = ParsedCrl.Parse(await clientA.GetByteArrayAsync("/crl/issuing.crl"));

        await Http.EnsureStatus(await adminB.PostAsJsonAsync($"/api/v1/certificates/{serial}/revoke", new { reason = "keyCompromise" }), HttpStatusCode.OK);
        using var fromB = await clientB.GetAsync("/crl/issuing.crl");
        var newer = ParsedCrl.Parse(await fromB.Content.ReadAsByteArrayAsync());
        Assert.True(newer.Number > before.Number && newer.Entries.ContainsKey(serial), "node b did not sign the revocation before answering");

        // A cache in front of both nodes revalidates the CRL it got from b at a, which has not looked for 10 minutes.
        using var revalidate = new HttpRequestMessage(HttpMethod.Get, "/crl/issuing.crl");
        revalidate.Headers.IfNoneMatch.Add(new EntityTagHeaderValue("\"root-1\""));
        revalidate.Headers.IfNoneMatch.Add(fromB.Headers.ETag!);
        using var atA = await clientA.SendAsync(revalidate);
        Assert.True(atA.StatusCode == HttpStatusCode.NotModified,
            $"node a answered {(int)atA.StatusCode} with CRL number {(atA.StatusCode == HttpStatusCode.OK ? ParsedCrl.Parse(await atA.Content.ReadAsByteArrayAsync()).Number : -1)} to a client holding number {newer.Number}");
        Assert.Equal(fromB.Headers.ETag, atA.Headers.ETag);
        Assert.Equal(newer.Number, ParsedCrl.Parse(await clientA.GetByteArrayAsync("/crl/issuing.crl")).Number);

        // A made-up newer number costs a database read and gets the CRL there is.
        using var madeUp = new HttpRequestMessage(HttpMethod.Get, "/crl/issuing.crl");
        madeUp.Headers.IfNoneMatch.Add(new EntityTagHeaderValue("\"issuing-999999999\""));
        using var answer = await clientA.SendAsync(madeUp);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Equal(newer.Number, ParsedCrl.Parse(await answer.Content.ReadAsByteArrayAsync()).Number);
    }
}
