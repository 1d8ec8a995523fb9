using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Mail;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Time.Testing;

namespace CertPortal.Tests.Mail;

/// <summary>One node of several in this process: the same database, the same clock (fake, or the system's when null), the
/// same SMTP server.</summary>
public sealed class MailNode : CertPortalApp
{
    private readonly Dictionary<string, string?> _settings;
    private readonly ConcurrentQueue<string>? _logs;
    private readonly bool _outboxWorker;
    private readonly SteppedClock? _offClock;

    /// <param name="logs">Where to capture every log line of this node, if anywhere.</param>
    /// <param name="outboxWorker">False: no background worker sends this node's outbox, only the test's <see cref="PassAsync"/>
    /// (the worker's first pass comes at a moment of its own choosing, after start-up).</param>
    /// <param name="offClock">This node's own clock, off from the others' (and the database's) by its offset; instead of
    /// <paramref name="clock"/>.</param>
    public MailNode(FakeTimeProvider? clock, Dictionary<string, string?> settings, ConcurrentQueue<string>? logs = null, bool outboxWorker = true,
        SteppedClock? offClock = null)
    {
        Clock = clock;
        _settings = settings;
        _logs = logs;
        _outboxWorker = outboxWorker;
        _offClock = offClock;
    }

    protected override IDictionary<string, string?> Settings => _settings;

    /// <summary>This node's settings, which a test changes between <see cref="CertPortalApp.StopAsync"/> and <see cref="CertPortalApp.Start"/>
    /// as an operator edits the configuration and restarts.</summary>
    public IDictionary<string, string?> Configured => _settings;

    protected override void ConfigureServices(IServiceCollection services)
    {
        if (_logs is not null) CapturingLoggerProvider.AddTo(services, _logs);
        if (_offClock is not null) services.AddSingleton<TimeProvider>(_offClock);
        // MailRegistration adds the worker as AddHostedService(sp => sp.GetRequiredService<MailOutbox>()).
        if (_outboxWorker) return;
        foreach (var worker in services.Where(d => d.ServiceType == typeof(IHostedService) && d.ImplementationFactory?.Method.ReturnType == typeof(MailOutbox)).ToList())
            services.Remove(worker);
    }

    public Task<MailOutbox.PassResult> PassAsync() => Service<MailOutbox>().RunOnceAsync(CancellationToken.None);
}

/// <summary>Expiry reminders and revocation notices, with time moved by a fake clock and passes racing each other: each
/// reminder arrives exactly once, across a restart, with two nodes sending at once on PostgreSQL and concurrent passes of
/// the one node SQLite serves (a second process on its file is refused at start-up).</summary>
public sealed class ReminderTests(PostgresServer postgres) : IClassFixture<PostgresServer>
{
    [Fact]
    public async Task Reminders_and_notices_arrive_once_with_concurrent_passes_on_one_sqlite_node()
    {
        var shared = TempDir.Create("mail-nodes");
        try
        {
            await RemindersAndNoticesAsync(new Dictionary<string, string?> { ["DataDirectory"] = shared }, twoNodes: false);
        }
        finally
        {
            TempDir.Delete(shared);
        }
    }

    [Fact]
    public async Task Reminders_and_notices_arrive_once_with_two_nodes_on_postgresql()
    {
        await RemindersAndNoticesAsync(new Dictionary<string, string?>
        {
            ["Database:Provider"] = "Postgres",
            ["Database:ConnectionString"] = postgres.ConnectionString("mail_" + Guid.NewGuid().ToString("N")[..8]),
        }, twoNodes: true);
    }

    /// <param name="twoNodes">False: "b" is "a", and the passes below race within the one node.</param>
    private static async Task RemindersAndNoticesAsync(Dictionary<string, string?> database, bool twoNodes)
    {
        var smtp = new SmtpServer();
        await smtp.InitializeAsync();
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var settings = new Dictionary<string, string?>(MailApp.MailSettings(smtp.Port))
        {
            ["Mail:ExpiryReminderDays:0"] = "7",
            ["Mail:ExpiryReminderDays:1"] = "30",
            // Multipurpose: the notices below include a hold, which S/MIME BR 7.2.2 forbid for strict certificates.
            ["Issuance:PolicyOids:0"] = CertPortal.Authority.Oids.PolicyMailboxValidatedMultipurpose,
            // The test drives the passes itself (the workers poll on the wall clock, so only a wake-up after a
            // commit starts one of theirs).
            ["Mail:PollInterval"] = "1.00:00:00",
        };
        foreach (var (k, v) in database) settings[k] = v;
        var a = new MailNode(clock, settings);
        var b = twoNodes ? new MailNode(clock, settings) : a;
        try
        {
            await a.InitializeAsync();
            if (twoNodes) await b.InitializeAsync();
            var run = Guid.NewGuid().ToString("N")[..6];
            var holder = $"holder.{run}@example.test";
            var renewer = $"renewer.{run}@example.test";
            var (expiring, _) = await a.IssueAsync(holder, "signing");
            var (replaced, _) = await b.IssueAsync(renewer, "signing");
            clock.Advance(TimeSpan.FromDays(1));
            // The newer one under another spelling of the mailbox (mailboxes compare without regard to case): still the holder's.
            var (successor, _) = await a.IssueAsync(char.ToUpperInvariant(renewer[0]) + renewer[1..], "signing");

            async Task PassesAsync()
            {
                // Both nodes (or the one node's passes) at once, twice: each finds the same due reminders and races to queue and send them.
                await Task.WhenAll(a.PassAsync(), b.PassAsync(), a.PassAsync(), b.PassAsync());
                await Task.WhenAll(a.PassAsync(), b.PassAsync());
            }
            void MoveTo(DateTimeOffset t) => clock.Advance(t - clock.GetUtcNow());

            MoveTo(expiring.NotAfter.AddDays(-31));
            await PassesAsync();
            Assert.Empty(smtp.MessagesTo(holder));

            MoveTo(expiring.NotAfter.AddDays(-30).AddHours(1));
            await PassesAsync();
            var first = Assert.Single(await smtp.WaitForMessagesToAsync(holder));
            Assert.Equal($"Your signing digital ID for {holder} expires in 30 days", first.Subject);
            Assert.Contains(expiring.SerialNumber, first.TextBody);
            // The reminder leads to self-service renewal of this very certificate (on the PortalUrl of the node that
            // queued it: each test node has its own port, a real cluster one address).
            var renewal = $"/renew?serial={expiring.SerialNumber}";
            var text = first.TextBody ?? "";
            Assert.True(text.Contains(a.BaseUrl + renewal, StringComparison.Ordinal) || text.Contains(b.BaseUrl + renewal, StringComparison.Ordinal), text);
            Assert.Contains($"{renewal}\">Renew your digital ID</a>", first.HtmlBody);

            // A restart of one node and more passes: nothing is sent again.
            await a.StopAsync();
            a.Start();
            await PassesAsync();
            await Task.Delay(1000);
            Assert.Single(smtp.MessagesTo(holder));

            MoveTo(expiring.NotAfter.AddDays(-7).AddHours(1));
            await PassesAsync();
            var both = await smtp.WaitForMessagesToAsync(holder, 2);
            Assert.Equal($"Your signing digital ID for {holder} expires in 7 days", both[1].Subject);
            MoveTo(expiring.NotAfter.AddHours(-1));
            await PassesAsync();
            await Task.Delay(1000);
            Assert.Equal(2, smtp.MessagesTo(holder).Count);
            // The renewer's older certificate gets no reminder: a newer one of the same profile exists.
            Assert.DoesNotContain(smtp.MessagesTo(renewer), m => (m.TextBody ?? "").Contains(replaced.SerialNumber, StringComparison.Ordinal));
            await smtp.WaitForAsync(all => all.Any(m => (m.TextBody ?? "").Contains(successor.SerialNumber, StringComparison.Ordinal)));

            var listed = await a.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/notifications?kind=expiry-reminder&recipient={holder}", Http.Json);
            Assert.Equal(2, listed.GetProperty("total").GetInt32());
            Assert.All(listed.GetProperty("notifications").EnumerateArray(), n => Assert.Equal("sent", n.GetProperty("status").GetString()));

            // Hold, release, revocation: one notice each, saying what happened; revoking again sends nothing.
            var person = $"revoked.{run}@example.test";
            var (cert, _) = await b.IssueAsync(person, "dual");
            await Http.EnsureStatus(await a.RevokeAsync(cert.SerialNumber, "certificateHold"), HttpStatusCode.OK);
            await PassesAsync();
            Assert.Contains("suspended", Assert.Single(await smtp.WaitForMessagesToAsync(person)).Subject);
            await Http.EnsureStatus(await b.Admin.PostAsync($"/api/v1/certificates/{cert.SerialNumber}/release", null), HttpStatusCode.OK);
            await PassesAsync();
            Assert.Contains("valid again", (await smtp.WaitForMessagesToAsync(person, 2))[1].Subject);
            await Http.EnsureStatus(await a.RevokeAsync(cert.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
            await Http.EnsureStatus(await b.RevokeAsync(cert.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
            await PassesAsync();
            var notice = (await smtp.WaitForMessagesToAsync(person, 3))[2];
            Assert.Equal($"Your digital ID for {person} has been revoked", notice.Subject);
            Assert.Contains("compromised", notice.TextBody ?? "");
            Assert.Contains("compromised", notice.HtmlBody ?? "");
            await Task.Delay(1000);
            Assert.Equal(3, smtp.MessagesTo(person).Count);
        }
        finally
        {
            await a.DisposeAsync();
            if (twoNodes) await b.DisposeAsync();
            await smtp.DisposeAsync();
        }
    }
}
