using System.Net;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Revocation;
using CertPortal.Tests.Api;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Postgres;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace CertPortal.Tests.Revocation;

/// <summary>Delta CRLs computed from the changes since their base (<see cref="CrlChange"/> rows naming certificates), not from
/// every revoked row: what they list, checked against the delta computed the old way (every revoked row merged with the
/// base), and the fall-back to that way after a change of unknown scope. On SQLite and on PostgreSQL.</summary>
public abstract class DeltaCrlChangesTests(CertPortalApp app)
{
    private const string DeltaPath = "/crl/issuing-delta.crl";

    [Fact]
    public async Task A_delta_lists_what_changed_since_its_base_as_the_merge_of_every_revoked_row_would()
    {
        var certs = new Dictionary<string, string>();
        foreach (var name in new[] { "a", "b", "c", "d", "e", "f", "g" })
            certs[name] = (await app.IssueAsync(Mailbox(name), "signing")).Cert.SerialNumber;

        // The base: a revoked, b held, c superseded, in a new complete CRL (the hour since the last one has passed).
        await Revoke(certs["a"], "keyCompromise");
        await Revoke(certs["b"], "certificateHold");
        app.Clock!.Advance(TimeSpan.FromHours(1) + TimeSpan.FromSeconds(5));
        await Revoke(certs["c"], "superseded");
        Step();
        var complete = await CrlAsync("/crl/issuing.crl");
        foreach (var name in new[] { "a", "b", "c" }) Assert.Contains(certs[name], complete.Entries.Keys);
        Assert.Empty((await CrlAsync(DeltaPath)).Entries);

        // Since the base: d revoked, e held, b released, c's reason now keyCompromise, f held and released (never in a
        // CRL), a revoked again (no change), g untouched.
        await Revoke(certs["d"], "keyCompromise");
        Step();
        await Revoke(certs["e"], "certificateHold");
        Step();
        await Release(certs["b"]);
        Step();
        await Revoke(certs["c"], "keyCompromise");
        Step();
        await Revoke(certs["f"], "certificateHold");
        Step();
        await Release(certs["f"]);
        Step();
        await Http.EnsureStatus(await app.RevokeAsync(certs["a"], "keyCompromise"), HttpStatusCode.OK);
        Step();

        var delta = await CrlAsync(DeltaPath);
        Assert.Equal(complete.Number, (await CrlAsync("/crl/issuing.crl")).Number);
        Assert.Equal(new Dictionary<string, X509RevocationReason?>
        {
            [certs["b"]] = X509RevocationReason.RemoveFromCrl,
            [certs["c"]] = X509RevocationReason.KeyCompromise,
            [certs["d"]] = X509RevocationReason.KeyCompromise,
            [certs["e"]] = X509RevocationReason.CertificateHold,
        }, delta.Entries);

        // The same entries, byte for byte, as the delta computed from every revoked row merged with the base.
        using var scope = app.Service<IServiceScopeFactory>().CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.False(await db.CrlChanges.AnyAsync(c => c.SerialNumber == null), "every change since the base names its certificate");
        var now = app.Clock.GetUtcNow();
        var changed = new CrlEntries();
        await CrlSigner.ChangedEntriesAsync(db, CertificateAuthority.IssuingName, now, complete.Der, changed, delta.ThisUpdate, default);
        var merged = new CrlEntries();
        await CrlSigner.DeltaEntriesAsync(db, now, complete.Der, merged, delta.ThisUpdate, default);
        Assert.Equal(4, changed.Count);
        Assert.True(changed.Content.SequenceEqual(merged.Content), "the changes give the delta that every revoked row gives");

        // The changes the deltas showed stay until the next complete CRL, which deletes them; none is owed meanwhile.
        Assert.False(await db.CrlChanges.AnyAsync(c => c.InDelta == null));
        Assert.Equal(0, await app.Service<CrlPublisher>().PublishAsync(default));
        app.Clock.Advance(TimeSpan.FromHours(1) + TimeSpan.FromSeconds(5));
        await Revoke(certs["g"], "affiliationChanged");
        Step();
        var next = await CrlAsync("/crl/issuing.crl");
        Assert.True(next.Number > delta.Number);
        Assert.Equal(X509RevocationReason.KeyCompromise, next.Entries[certs["c"]]);
        Assert.DoesNotContain(certs["b"], next.Entries.Keys);
        Assert.DoesNotContain(certs["f"], next.Entries.Keys);
        Assert.Contains(certs["g"], next.Entries.Keys);
        Assert.Empty((await CrlAsync(DeltaPath)).Entries);
        db.ChangeTracker.Clear();
        Assert.Equal(0, await db.CrlChanges.CountAsync());
    }

    [Fact]
    public async Task A_change_of_unknown_scope_makes_the_deltas_read_every_revoked_row_until_the_next_complete_crl()
    {
        var named = (await app.IssueAsync(Mailbox("named"), "signing")).Cert.SerialNumber;
        var unnamed = (await app.IssueAsync(Mailbox("unnamed"), "signing")).Cert.SerialNumber;
        var later = (await app.IssueAsync(Mailbox("later"), "signing")).Cert.SerialNumber;
        app.Clock!.Advance(TimeSpan.FromHours(1) + TimeSpan.FromSeconds(5));
        await Revoke((await app.IssueAsync(Mailbox("base"), "signing")).Cert.SerialNumber, "superseded");
        Step();

        // A revocation written without its change row (as a version before per-certificate rows did, which deleted the rows
        // its deltas showed): a delta made from the named changes cannot know it.
        using var scope = app.Service<IServiceScopeFactory>().CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var now = app.Clock.GetUtcNow();
        await db.Certificates.Where(c => c.SerialNumber == unnamed).ExecuteUpdateAsync(u => u
            .SetProperty(c => c.RevokedAt, now).SetProperty(c => c.RevocationReason, RevocationReason.CessationOfOperation));
        await Revoke(named, "keyCompromise");
        Step();
        var delta = await CrlAsync(DeltaPath);
        Assert.Contains(named, delta.Entries.Keys);
        Assert.DoesNotContain(unnamed, delta.Entries.Keys);

        // A change of unknown scope (what the migration adds for such rows, and a node with delta CRLs off writes): every
        // delta until the next complete CRL is made from every revoked row.
        db.CrlChanges.Add(new CrlChange { Authority = CertificateAuthority.IssuingName, At = now });
        await db.SaveChangesAsync();
        // Signed by this call, or by a pass of the publisher's own loop that takes its lock first (its check timer fires when the
        // test moves the clock an hour, and a busy machine can delay that pass to here): either way a new delta is served once
        // the call returns. Counting what this call signed failed once, when a pass woken by the revocation before came first.
        var before = delta.Number;
        await app.Service<CrlPublisher>().PublishAsync(default);
        Step();
        delta = await CrlAsync(DeltaPath);
        Assert.True(delta.Number > before, "a delta was signed for the change of unknown scope");
        Assert.Equal(X509RevocationReason.CessationOfOperation, delta.Entries[unnamed]);
        Assert.Equal(X509RevocationReason.KeyCompromise, delta.Entries[named]);
        await Revoke(later, "superseded");
        Step();
        delta = await CrlAsync(DeltaPath);
        Assert.Equal(new[] { named, unnamed, later }.Order(), delta.Entries.Keys.Order());

        // The next complete CRL deletes it; the deltas after it are made from the named changes again.
        app.Clock.Advance(TimeSpan.FromHours(1) + TimeSpan.FromSeconds(5));
        await Revoke((await app.IssueAsync(Mailbox("rebase"), "signing")).Cert.SerialNumber, "superseded");
        Step();
        db.ChangeTracker.Clear();
        Assert.False(await db.CrlChanges.AnyAsync(c => c.SerialNumber == null));
        Assert.Empty((await CrlAsync(DeltaPath)).Entries);
    }

    [Fact]
    public async Task A_hold_released_and_placed_again_since_the_base_is_in_the_delta_with_its_new_date()
    {
        var held = (await app.IssueAsync(Mailbox("reheld"), "signing")).Cert.SerialNumber;
        await Revoke(held, "certificateHold");
        var firstHold = (await app.GetCertificateAsync(held)).RevokedAt!.Value;
        app.Clock!.Advance(TimeSpan.FromHours(1) + TimeSpan.FromSeconds(5));
        await Revoke((await app.IssueAsync(Mailbox("rehold.base"), "signing")).Cert.SerialNumber, "superseded");
        Step();
        var complete = await CrlAsync("/crl/issuing.crl");
        Assert.Equal(X509RevocationReason.CertificateHold, complete.Entries[held]);

        // Released (valid again), and a minute later on hold again: the same reason as in the base, but a hold that began
        // later. A complete CRL signed now lists the new date; base + delta must say the same (RFC 5280 §5.2.4), or a relying
        // party that weighs revocationDate (a signature checked as of a time between the two holds) finds it on hold then.
        await Release(held);
        Step();
        app.Clock.Advance(TimeSpan.FromMinutes(1));
        await Revoke(held, "certificateHold");
        Step();
        var secondHold = (await app.GetCertificateAsync(held)).RevokedAt!.Value;
        Assert.True(secondHold > firstHold.AddSeconds(59));

        var delta = await CrlAsync(DeltaPath);
        Assert.Equal(complete.Number, (await CrlAsync("/crl/issuing.crl")).Number);
        Assert.True(delta.Entries.TryGetValue(held, out var reason), "the delta lists the hold placed again");
        Assert.Equal(X509RevocationReason.CertificateHold, reason);
        Assert.Equal(CrlSigner.WholeSeconds(secondHold), RevocationDate(delta.Der, held));

        // The merge of every revoked row with the base says the same.
        using var scope = app.Service<IServiceScopeFactory>().CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var changed = new CrlEntries();
        await CrlSigner.ChangedEntriesAsync(db, CertificateAuthority.IssuingName, app.Clock.GetUtcNow(), complete.Der, changed, delta.ThisUpdate, default);
        var merged = new CrlEntries();
        await CrlSigner.DeltaEntriesAsync(db, app.Clock.GetUtcNow(), complete.Der, merged, delta.ThisUpdate, default);
        Assert.Equal(1, merged.Count);
        Assert.True(changed.Content.SequenceEqual(merged.Content), "the changes give the delta that every revoked row gives");
    }

    private static DateTimeOffset? RevocationDate(byte[] crlDer, string serial) =>
        new Org.BouncyCastle.X509.X509CrlParser().ReadCrl(crlDer)
            .GetRevokedCertificate(new Org.BouncyCastle.Math.BigInteger(serial, 16)) is { } entry
            ? new DateTimeOffset(entry.RevocationDate, TimeSpan.Zero) : null;

    private static string Mailbox(string name) => $"delta.{name}.{Guid.NewGuid().ToString("N")[..8]}@example.test";

    private async Task Revoke(string serial, string reason) => await Http.EnsureStatus(await app.RevokeAsync(serial, reason), HttpStatusCode.OK);

    private async Task Release(string serial) =>
        await Http.EnsureStatus(await app.Admin.PostAsync($"/api/v1/certificates/{serial}/release", null), HttpStatusCode.OK);

    /// <summary>Real-clock waits for the next second give up on a frozen clock; moving it keeps each CRL in its own second.</summary>
    private void Step() => app.Clock!.Advance(TimeSpan.FromSeconds(2));

    private async Task<ParsedCrl> CrlAsync(string path) => ParsedCrl.Parse(await app.Client.GetByteArrayAsync(path));
}

public sealed class SqliteDeltaCrlChangesTests(DeltaCrlApp app) : DeltaCrlChangesTests(app), IClassFixture<DeltaCrlApp>;

/// <summary>Delta CRLs on PostgreSQL, with a clock the test moves.</summary>
public sealed class PostgresDeltaCrlApp : PostgresApp
{
    public PostgresDeltaCrlApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow);

    protected override IDictionary<string, string?> Settings =>
        new Dictionary<string, string?>(base.Settings) { ["Crl:DeltaBaseInterval"] = "01:00:00" };
}

public sealed class PostgresDeltaCrlChangesTests(PostgresDeltaCrlApp app) : DeltaCrlChangesTests(app), IClassFixture<PostgresDeltaCrlApp>;
