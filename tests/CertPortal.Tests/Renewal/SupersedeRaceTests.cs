using System.Net;
using System.Net.Http.Json;
using CertPortal.Auditing;
using CertPortal.Data;
using CertPortal.Renewal;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Postgres;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Renewal;

/// <summary>Renewed certificates are due to be superseded as soon as their successor exists; holds allowed (multipurpose policy).</summary>
public sealed class SupersedeAtOnceApp : CertPortalApp
{
    protected override IDictionary<string, string?> Settings => SupersedeRaces.Settings(new Dictionary<string, string?>());
}

public sealed class PostgresSupersedeAtOnceApp : PostgresApp
{
    protected override IDictionary<string, string?> Settings => SupersedeRaces.Settings(base.Settings);
}

public sealed class SupersedeRaceTests(SupersedeAtOnceApp app) : IClassFixture<SupersedeAtOnceApp>
{
    [Fact]
    public Task A_hold_placed_after_the_pass_read_its_list_stays_a_hold() => SupersedeRaces.HoldAfterReadAsync(app);

    [Fact]
    public Task Two_passes_over_one_list_revoke_once_and_a_node_finding_the_pass_lock_held_skips() => SupersedeRaces.TwoPassesAsync(app);

    [Fact]
    public Task A_renewed_certificate_whose_successor_is_revoked_or_on_hold_is_not_superseded() => SupersedeRaces.RevokedSuccessorAsync(app);
}

public sealed class PostgresSupersedeRaceTests(PostgresSupersedeAtOnceApp app) : IClassFixture<PostgresSupersedeAtOnceApp>
{
    [Fact]
    public Task A_hold_placed_after_the_pass_read_its_list_stays_a_hold() => SupersedeRaces.HoldAfterReadAsync(app);

    [Fact]
    public Task Two_passes_over_one_list_revoke_once_and_a_node_finding_the_pass_lock_held_skips() => SupersedeRaces.TwoPassesAsync(app);

    [Fact]
    public Task A_renewed_certificate_whose_successor_is_revoked_or_on_hold_is_not_superseded() => SupersedeRaces.RevokedSuccessorAsync(app);
}

/// <summary>The supersede pass split where a race falls: between reading the due certificates and revoking them. Each test
/// holds the pass lock itself, as another node would, so the service's own background pass skips and the test alone decides
/// what happens between the two steps.</summary>
public static class SupersedeRaces
{
    public static IDictionary<string, string?> Settings(IDictionary<string, string?> settings)
    {
        settings["Renewal:OpensBeforeExpiry"] = "400.00:00:00";
        settings["Renewal:SupersedeAfter"] = "00:00:00";
        // S/MIME BR 7.2.2 allow certificateHold only for multipurpose certificates.
        settings["Issuance:PolicyOids:0"] = CertPortal.Authority.Oids.PolicyMailboxValidatedMultipurpose;
        return settings;
    }

    public static async Task HoldAfterReadAsync(CertPortalApp app)
    {
        await using var scope = app.Services.CreateAsyncScope();
        await using var passLock = await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>()
            .TryHoldNamedAsync(SupersedeWorker.PassLock, CancellationToken.None);
        Assert.NotNull(passLock);
        var worker = app.Service<SupersedeWorker>();
        var old = await RenewAsync(app, "held");

        var due = await worker.DueAsync(CancellationToken.None);
        Assert.Equal(old, Assert.Single(due));
        await Http.EnsureStatus(await app.RevokeAsync(old, "certificateHold"), HttpStatusCode.OK);
        Assert.Equal(0, await worker.SupersedeAsync(due, CancellationToken.None));

        var held = await app.GetCertificateAsync(old);
        Assert.Equal("onHold", held.Status);
        Assert.Equal("certificateHold", held.RevocationReason);
        await Http.EnsureStatus(await app.Admin.PostAsync($"/api/v1/certificates/{old}/release", null), HttpStatusCode.OK);
        Assert.Equal("valid", (await app.GetCertificateAsync(old)).Status);

        // Released, it is due again, and the next pass supersedes it.
        Assert.Equal(1, await worker.SupersedeAsync(await worker.DueAsync(CancellationToken.None), CancellationToken.None));
        Assert.Equal("superseded", (await app.GetCertificateAsync(old)).RevocationReason);
    }

    public static async Task TwoPassesAsync(CertPortalApp app)
    {
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var worker = app.Service<SupersedeWorker>();
        var old = await RenewAsync(app, "twice");
        await using (var passLock = await db.TryHoldNamedAsync(SupersedeWorker.PassLock, CancellationToken.None))
        {
            Assert.NotNull(passLock);
            // Another node holds the pass: this one skips it.
            Assert.Equal(0, await worker.RunOnceAsync(CancellationToken.None));
            Assert.Equal("valid", (await app.GetCertificateAsync(old)).Status);

            // Two nodes that read the same list (the lock passed on between them) revoke it once between them.
            var due = await worker.DueAsync(CancellationToken.None);
            Assert.Equal(old, Assert.Single(due));
            var passes = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ => Task.Run(() => worker.SupersedeAsync(due, CancellationToken.None))));
            Assert.Equal(1, passes.Sum());
        }
        var superseded = await app.GetCertificateAsync(old);
        Assert.Equal("revoked", superseded.Status);
        Assert.Equal("superseded", superseded.RevocationReason);
        Assert.Equal(1, await db.AuditEvents.CountAsync(e => e.Target == $"certificate:{old}" && e.Action == AuditActions.CertificateRevoked));
    }

    public static async Task RevokedSuccessorAsync(CertPortalApp app)
    {
        await using var scope = app.Services.CreateAsyncScope();
        await using var passLock = await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>()
            .TryHoldNamedAsync(SupersedeWorker.PassLock, CancellationToken.None);
        Assert.NotNull(passLock);
        var worker = app.Service<SupersedeWorker>();
        var (old, successor) = await RenewWithSuccessorAsync(app, "lost");

        // The new ID on hold (a lost laptop, say): the old one is not superseded meanwhile.
        await Http.EnsureStatus(await app.RevokeAsync(successor, "certificateHold"), HttpStatusCode.OK);
        Assert.DoesNotContain(old, await worker.DueAsync(CancellationToken.None));
        Assert.Equal("valid", (await app.GetCertificateAsync(old)).Status);

        // Released, the new one replaces the old one again.
        await Http.EnsureStatus(await app.Admin.PostAsync($"/api/v1/certificates/{successor}/release", null), HttpStatusCode.OK);
        Assert.Contains(old, await worker.DueAsync(CancellationToken.None));

        // Revoked for good: the old one stays valid, the holder's only valid ID until it expires or they enrol again.
        await Http.EnsureStatus(await app.RevokeAsync(successor, "keyCompromise"), HttpStatusCode.OK);
        Assert.Equal(0, await worker.SupersedeAsync(await worker.DueAsync(CancellationToken.None), CancellationToken.None));
        Assert.Equal("valid", (await app.GetCertificateAsync(old)).Status);
    }

    /// <summary>Issues a certificate and renews it; returns the renewed (old) certificate's serial.</summary>
    private static async Task<string> RenewAsync(CertPortalApp app, string name) => (await RenewWithSuccessorAsync(app, name)).Old;

    /// <summary>Issues a certificate and renews it; returns both serials.</summary>
    private static async Task<(string Old, string Successor)> RenewWithSuccessorAsync(CertPortalApp app, string name)
    {
        Tool.Require("openssl", "openssl");
        using var dir = new ToolDir("supersede-race");
        var mailbox = $"{name}.{Guid.NewGuid().ToString("N")[..6]}@example.com";
        var (old, key) = await app.IssueAsync(mailbox, "signing");
        var cms = RenewalRequests.Sign(dir, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(mailbox), old.CertificatePem, key);
        var response = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms });
        await Http.EnsureStatus(response, HttpStatusCode.Created);
        return (old.SerialNumber, (await response.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!.SerialNumber);
    }
}
