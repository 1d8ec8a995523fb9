using System.Net.Http.Json;
using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Renewal;
using CertPortal.Revocation;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using static CertPortal.Tests.Infrastructure.WriterGroups;

namespace CertPortal.Tests.Renewal;

/// <summary>A renewal and a keyCompromise revocation of the certificate it renews, committed together in one group of the writer, in
/// either order: no valid renewal of the compromised certificate is left. The two decide from the renewed certificate's row: a
/// revocation that read it in the same round trip as the renewal's first step, before the renewal's second step set RenewedBy, would
/// miss the renewal.</summary>
public sealed class PostgresCompromisedRenewalTests(PostgresRenewalApp app) : IClassFixture<PostgresRenewalApp>
{
    [Fact]
    public async Task A_renewal_and_a_key_compromise_in_one_group_leave_no_valid_renewal_whichever_comes_first()
    {
        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("pg-renewal-compromised");
        var marker = Guid.NewGuid().ToString("N")[..8];
        var (renewedFirst, renewedFirstKey) = await app.IssueAsync($"renewed-first.{marker}@example.test", "signing");
        var (revokedFirst, revokedFirstKey) = await app.IssueAsync($"revoked-first.{marker}@example.test", "signing");
        string Cms(EnrollmentResponse current, SubscriberKeyPair key, string mailbox) =>
            RenewalRequests.Sign(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(mailbox), current.CertificatePem, key);
        var renewFirst = Cms(renewedFirst, renewedFirstKey, $"renewed-first.{marker}@example.test");
        var renewSecond = Cms(revokedFirst, revokedFirstKey, $"revoked-first.{marker}@example.test");

        var writer = app.Service<GroupCommitWriter>();
        var (started, release, gate) = Gate(writer);
        await started;
        var scopes = new List<AsyncServiceScope>();
        Task<Outcome<EnrollmentResult>> renewal, refusedRenewal;
        Task<Outcome<RevokeResult>> compromise, earlierCompromise;
        try
        {
            // One at a time, so the queue's order is the order written here.
            renewal = app.Services.InNewScope<RenewalService>(scopes).RenewAsync(new RenewalRequest(renewFirst), CancellationToken.None);
            await WaitUntil(() => writer.Queued == 1);
            compromise = app.Services.InNewScope<RevocationService>(scopes)
                .RevokeAsync(renewedFirst.SerialNumber, new RevokeRequest("keyCompromise"), "test", CancellationToken.None);
            await WaitUntil(() => writer.Queued == 2);
            earlierCompromise = app.Services.InNewScope<RevocationService>(scopes)
                .RevokeAsync(revokedFirst.SerialNumber, new RevokeRequest("keyCompromise"), "test", CancellationToken.None);
            await WaitUntil(() => writer.Queued == 3);
            refusedRenewal = app.Services.InNewScope<RenewalService>(scopes).RenewAsync(new RenewalRequest(renewSecond), CancellationToken.None);
            await WaitUntil(() => writer.Queued == 4);
        }
        finally
        {
            release(); // also when the wait failed: a blocked writer would fail the other tests
        }
        await gate;

        // The renewal first: made, and revoked with the certificate whose key proved it.
        var renewed = await renewal;
        Assert.True(renewed.Succeeded, renewed.Failure?.Detail);
        var revoked = await compromise;
        Assert.True(revoked.Succeeded, revoked.Failure?.Detail);
        Assert.Equal([renewed.Value!.SerialNumber], revoked.Value!.AlsoRevoked);
        // The revocation first: the renewal is refused (its conditional update finds the certificate revoked).
        Assert.True((await earlierCompromise).Succeeded);
        Assert.Equal("Certificate no longer valid.", (await refusedRenewal).Failure?.Title);
        foreach (var scope in scopes) await scope.DisposeAsync();

        await using var check = app.Services.CreateAsyncScope();
        var db = check.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var stored = await db.Certificates.AsNoTracking().Where(c => c.Email.EndsWith($".{marker}@example.test")).ToListAsync();
        Assert.Equal(3, stored.Count);
        Assert.All(stored, c => Assert.Equal(CertPortal.Authority.RevocationReason.KeyCompromise, c.RevocationReason));
    }

    [Fact]
    public async Task A_release_of_a_renewals_hold_queued_after_the_compromise_in_one_group_reads_the_revocation()
    {
        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("pg-renewal-compromised-hold");
        var mailbox = $"held.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (current, key) = await app.IssueAsync(mailbox, "signing");
        var renewed = await app.Client.PostAsJsonAsync("/api/v1/renewals",
            new { cms = RenewalRequests.Sign(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(mailbox), current.CertificatePem, key) });
        await Http.EnsureStatus(renewed, System.Net.HttpStatusCode.Created);
        var successor = (await renewed.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!.SerialNumber;
        await Http.EnsureStatus(await app.RevokeAsync(successor, "certificateHold"), System.Net.HttpStatusCode.OK);

        var writer = app.Service<GroupCommitWriter>();
        var (started, release, gate) = Gate(writer);
        await started;
        var scopes = new List<AsyncServiceScope>();
        Task<Outcome<RevokeResult>> compromise;
        Task<Outcome<IssuedCertificate>> releaseHold;
        try
        {
            compromise = app.Services.InNewScope<RevocationService>(scopes)
                .RevokeAsync(current.SerialNumber, new RevokeRequest("keyCompromise"), "test", CancellationToken.None);
            await WaitUntil(() => writer.Queued == 1);
            // Nothing names the renewal to the writer before the compromise's read comes back: its renewals are keys it learns.
            releaseHold = app.Services.InNewScope<RevocationService>(scopes).ReleaseHoldAsync(successor, "test", CancellationToken.None);
            await WaitUntil(() => writer.Queued == 2);
        }
        finally
        {
            release();
        }
        await gate;

        Assert.Equal([successor], (await compromise).Value!.AlsoRevoked);
        // Read again after the compromise wrote: revoked for good, not on hold any more, so there is no hold to release.
        Assert.Equal(FailureKind.Conflict, (await releaseHold).Failure?.Kind);
        foreach (var scope in scopes) await scope.DisposeAsync();
        Assert.Equal(("revoked", "keyCompromise"), await StatusAsync(successor));
    }

    private async Task<(string Status, string? Reason)> StatusAsync(string serial)
    {
        var record = await app.GetCertificateAsync(serial);
        return (record.Status, record.RevocationReason);
    }
}
