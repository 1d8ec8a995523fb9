using System.Net;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Api;

/// <summary>Races run against every database provider (SQLite in RevocationApiTests, PostgreSQL in PostgresTests).</summary>
public static class RevocationRaces
{
    /// <summary>A release racing a keyCompromise revocation of a held certificate must never leave it valid: either
    /// order ends revoked (revoke then release is refused with 409, release then revoke revokes).</summary>
    public static async Task A_release_racing_a_permanent_revocation_never_brings_the_certificate_back(CertPortalApp app, string prefix)
    {
        var held = new List<string>();
        for (var i = 0; i < 8; i++)
        {
            var serial = (await app.IssueAsync($"{prefix}.{Guid.NewGuid().ToString("N")[..6]}@example.test", "signing")).Cert.SerialNumber;
            await Http.EnsureStatus(await app.RevokeAsync(serial, "certificateHold"), HttpStatusCode.OK);
            held.Add(serial);
        }
        using var start = new SemaphoreSlim(0);
        var tasks = held.SelectMany(serial => new[]
        {
            Task.Run(async () => { await start.WaitAsync(); return await app.RevokeAsync(serial, "keyCompromise"); }),
            Task.Run(async () => { await start.WaitAsync(); return await app.Admin.PostAsync($"/api/v1/certificates/{serial}/release", null); }),
        }).ToList();
        start.Release(tasks.Count);
        var responses = await Task.WhenAll(tasks);
        Assert.All(responses, r => Assert.True(r.StatusCode is HttpStatusCode.OK or HttpStatusCode.Conflict, $"unexpected {(int)r.StatusCode}"));

        var r = await app.Client.GetAsync("/crl/issuing.crl");
        await Http.EnsureStatus(r, HttpStatusCode.OK);
        var crl = ParsedCrl.Parse(await r.Content.ReadAsByteArrayAsync());
        foreach (var serial in held)
        {
            var record = await app.GetCertificateAsync(serial);
            Assert.True(record.Status == "revoked" && record.RevocationReason == "keyCompromise", $"{serial} ended {record.Status} ({record.RevocationReason})");
            Assert.Equal(X509RevocationReason.KeyCompromise, crl.Entries[serial]);
        }
    }
}
