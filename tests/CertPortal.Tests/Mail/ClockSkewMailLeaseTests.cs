using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Mail;

/// <summary>Two nodes on one PostgreSQL whose clocks differ by a minute, far more than Mail:LeaseMargin (10 s): node A sends an
/// invitation over a slow route (a few seconds), node B runs passes meanwhile. Leases are timed on the database's clock, so B
/// leaves the message to A and it arrives once. Before, each node timed leases on its own clock: a lease written by a node
/// whose clock is behind had ended for the others when it was written, and a node whose clock is ahead saw the others'
/// leases end early; either way B sent the message while A was still sending it, and it arrived twice.</summary>
public sealed class ClockSkewMailLeaseTests(PostgresServer postgres) : IClassFixture<PostgresServer>
{
    [Theory]
    [InlineData(-60, 0)]
    [InlineData(0, 60)]
    public async Task A_node_whose_clock_is_off_by_more_than_the_lease_margin_does_not_send_a_message_another_node_holds(
        int aClockOffsetSeconds, int bClockOffsetSeconds)
    {
        var smtp = new SmtpServer();
        await smtp.InitializeAsync();
        // 0.3 s each way: A's send (greeting, EHLO, MAIL, RCPT, DATA, the dot) takes about 4 s, well within its 30 s lease.
        using var slowRoute = new LatencyProxy(smtp.Port) { Latency = TimeSpan.FromMilliseconds(300) };
        var database = postgres.ConnectionString("mail_skew_" + Guid.NewGuid().ToString("N")[..8]);
        Dictionary<string, string?> Settings(int smtpPort) => new(MailApp.MailSettings(smtpPort))
        {
            ["Database:Provider"] = "Postgres",
            ["Database:ConnectionString"] = database,
            ["Mail:Timeout"] = "00:00:02",
            ["Mail:Lease"] = "00:00:30",
            // Only A's wake-up on queuing and the test's passes on B send; no poll in between.
            ["Mail:PollInterval"] = "1.00:00:00",
        };
        var aLogs = new ConcurrentQueue<string>();
        var a = new MailNode(clock: null, Settings(slowRoute.Port), aLogs,
            offClock: new SteppedClock { Offset = TimeSpan.FromSeconds(aClockOffsetSeconds) });
        var b = new MailNode(clock: null, Settings(smtp.Port), outboxWorker: false,
            offClock: new SteppedClock { Offset = TimeSpan.FromSeconds(bClockOffsetSeconds) });
        try
        {
            await a.InitializeAsync();
            await b.InitializeAsync();
            var email = $"skew.{Guid.NewGuid().ToString("N")[..8]}@example.test";
            // Queued on A, which wakes its outbox: A claims the invitation and starts sending it over the slow route.
            await Http.EnsureStatus(await a.Admin.PostAsJsonAsync("/api/v1/tokens", new { email, profile = "signing", send = true }), HttpStatusCode.Created);
            await Eventually.TrueAsync(() => slowRoute.Connections > 0, () => "node A never connected to the SMTP server");

            // B's passes race A's send until A's pass with the message has ended.
            var sentByB = 0;
            var waiting = Stopwatch.StartNew();
            while (!aLogs.Any(l => l.Contains("Mail outbox pass:", StringComparison.Ordinal)))
            {
                Assert.True(waiting.Elapsed < TimeSpan.FromSeconds(30), "node A's pass never ended");
                sentByB += (await b.PassAsync()).Sent;
                await Task.Delay(200);
            }
            sentByB += (await b.PassAsync()).Sent;

            await Task.Delay(500);
            Assert.Single(smtp.MessagesTo(email));
            Assert.Equal(0, sentByB);
            Assert.Contains(aLogs, l => l.Contains("Mail outbox pass: 1 sent", StringComparison.Ordinal));
            Assert.DoesNotContain(aLogs, l => l.Contains("taken over by another node", StringComparison.Ordinal));
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
            await smtp.DisposeAsync();
        }
    }
}
