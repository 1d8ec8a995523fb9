using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using CertPortal.Mail;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.Hosting;

namespace CertPortal.Tests.Mail;

/// <summary>The mail outbox stopped on its own (its StopAsync, not the host's shutdown) in the middle of a send: the pass ends
/// quietly, the host serves on, and the message it had claimed stays leased until the lease ends, as a node that died would
/// leave it; then a pass sends it, once. Before, the send's OperationCanceledException escaped the worker, and .NET's host
/// stopped the whole application for a failed worker.</summary>
public sealed class MailOutboxStopTests
{
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(6);

    [Fact]
    public async Task Stopping_the_outbox_mid_send_ends_the_pass_quietly_and_the_message_is_sent_once_after_its_lease()
    {
        var smtp = new SmtpServer();
        await smtp.InitializeAsync();
        // 0.7 s each way: connecting alone (greeting, EHLO) takes about 3 s, so the stop below finds the pass in the middle of it.
        using var slowRoute = new LatencyProxy(smtp.Port) { Latency = TimeSpan.FromMilliseconds(700) };
        var logs = new ConcurrentQueue<string>();
        var node = new MailNode(clock: null, new Dictionary<string, string?>(MailApp.MailSettings(slowRoute.Port))
        {
            ["Mail:Timeout"] = "00:00:02",
            ["Mail:Lease"] = Lease.ToString(),
            ["Mail:LeaseMargin"] = "00:00:01",
            // Only the wake-up on queuing starts the worker's pass; the test's passes come after the stop.
            ["Mail:PollInterval"] = "1.00:00:00",
        }, logs);
        try
        {
            await node.InitializeAsync();
            var outbox = node.Service<MailOutbox>();
            var lifetime = node.Service<IHostApplicationLifetime>();
            var email = $"stopped.{Guid.NewGuid().ToString("N")[..8]}@example.test";
            await Http.EnsureStatus(await node.Admin.PostAsJsonAsync("/api/v1/tokens", new { email, profile = "signing", send = true }), HttpStatusCode.Created);
            // The worker connects only once it has claimed the invitation.
            await Eventually.TrueAsync(() => slowRoute.Connections > 0, () => "the outbox never connected to the SMTP server");

            using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
                await outbox.StopAsync(timeout.Token);
            var task = outbox.ExecuteTask!;
            Assert.True(task.IsCompletedSuccessfully, $"the outbox ended {task.Status}: {task.Exception?.InnerException}");
            // The host's watch on the worker's task runs as that task ends.
            await Task.Delay(500);
            Assert.False(lifetime.ApplicationStopping.IsCancellationRequested, "stopping the mail outbox stopped the host: " +
                string.Join(" | ", logs.Where(l => l.Contains("Microsoft.Extensions.Hosting", StringComparison.Ordinal))));
            Assert.DoesNotContain(logs, l => l.Contains("BackgroundService failed", StringComparison.Ordinal));

            // Still leased to the stopped pass: nothing sends it before the lease ends (the send was cut off before its final dot,
            // but in general whether the server took a message whose answer was lost is unknown).
            slowRoute.Latency = TimeSpan.Zero;
            Assert.Equal(0, (await node.PassAsync()).Sent);
            var waiting = Stopwatch.StartNew();
            while ((await node.PassAsync()).Sent == 0)
            {
                Assert.True(waiting.Elapsed < TimeSpan.FromSeconds(30), "the message was not sent after its lease ended");
                await Task.Delay(250);
            }
            Assert.Single(await smtp.WaitForMessagesToAsync(email));
            await Task.Delay(500);
            Assert.Single(smtp.MessagesTo(email));
        }
        finally
        {
            await node.DisposeAsync();
            await smtp.DisposeAsync();
        }
    }
}
