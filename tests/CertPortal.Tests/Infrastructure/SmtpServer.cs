using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MimeKit;

namespace CertPortal.Tests.Infrastructure;

/// <summary>A real SMTP server (Debian's python3-aiosmtpd) on a free loopback port that delivers every message
/// into a maildir, where tests read what people would receive. It can be stopped and started again on the same
/// port, as an outage would. A message to a mailbox whose local part begins with <see cref="RefusedAfterData"/> is
/// accepted at RCPT and refused for good after DATA (554 5.7.1), as a content filter refuses one.</summary>
public sealed class SmtpServer : IAsyncLifetime
{
    private const string Python = "/usr/bin/python3";
    private readonly string _dir = TempDir.Create("smtp");
    private Process? _process;

    public const string RefusedAfterData = "refused-after-data";

    /// <summary>aiosmtpd's Mailbox handler with the refusal after DATA (aiosmtpd's -c takes a handler class by module path).</summary>
    private const string Handler = $$"""
        from aiosmtpd.handlers import Mailbox

        class RefusingMailbox(Mailbox):
            async def handle_DATA(self, server, session, envelope):
                if any(r.lower().startswith("{{RefusedAfterData}}") for r in envelope.rcpt_tos):
                    return "554 5.7.1 Message refused by content policy"
                return await super().handle_DATA(server, session, envelope)
        """;

    public int Port { get; } = FreePort();
    public string Maildir => Path.Combine(_dir, "maildir");

    public Task InitializeAsync() => StartAsync();

    public async Task StartAsync()
    {
        if (!File.Exists(Python) || Tool.Run(Python, ["-c", "import aiosmtpd"]).ExitCode != 0)
            throw new Xunit.Sdk.XunitException("python3-aiosmtpd is not installed: run the README's test command (scripts/install-test-deps.sh installs it).");
        File.WriteAllText(Path.Combine(_dir, "certportal_test_smtp.py"), Handler);
        var psi = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.Environment["PYTHONPATH"] = _dir;
        foreach (var a in new[] { "-m", "aiosmtpd", "-n", "-l", $"127.0.0.1:{Port.ToString(CultureInfo.InvariantCulture)}", "-c", "certportal_test_smtp.RefusingMailbox", Maildir })
            psi.ArgumentList.Add(a);
        _process = Process.Start(psi)!;
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        for (var i = 0; i < 200; i++)
        {
            if (_process.HasExited) throw new InvalidOperationException($"aiosmtpd exited with {_process.ExitCode}");
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, Port);
                return;
            }
            catch (SocketException)
            {
                await Task.Delay(50);
            }
        }
        throw new TimeoutException("aiosmtpd did not start listening");
    }

    /// <summary>SIGKILL: the server vanishes mid-whatever, as in an outage.</summary>
    public void Stop()
    {
        if (_process is { HasExited: false }) _process.Kill(entireProcessTree: true);
        _process?.WaitForExit(10_000);
        _process?.Dispose();
        _process = null;
    }

    /// <summary>Every message delivered so far, in the order of delivery.</summary>
    public IReadOnlyList<MimeMessage> Messages()
    {
        var files = new[] { "new", "cur" }.Select(d => Path.Combine(Maildir, d)).Where(Directory.Exists)
            .SelectMany(Directory.GetFiles).OrderBy(File.GetLastWriteTimeUtc).ThenBy(f => f, StringComparer.Ordinal);
        return files.Select(f => MimeMessage.Load(f)).ToList();
    }

    public IReadOnlyList<MimeMessage> MessagesTo(string mailbox) =>
        Messages().Where(m => m.To.Mailboxes.Any(a => string.Equals(a.Address, mailbox, StringComparison.OrdinalIgnoreCase))).ToList();

    /// <summary>Polls the maildir until <paramref name="done"/> holds for what arrived; fails with what did arrive.</summary>
    public async Task<IReadOnlyList<MimeMessage>> WaitForAsync(Func<IReadOnlyList<MimeMessage>, bool> done, int seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (true)
        {
            var messages = Messages();
            if (done(messages)) return messages;
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"Expected mail did not arrive in {seconds} s; {messages.Count} messages arrived: " +
                    string.Join("; ", messages.Take(20).Select(m => $"{m.To} '{m.Subject}'")));
            await Task.Delay(100);
        }
    }

    public async Task<IReadOnlyList<MimeMessage>> WaitForMessagesToAsync(string mailbox, int count = 1, int seconds = 30)
    {
        await WaitForAsync(all => all.Count(m => m.To.Mailboxes.Any(a => string.Equals(a.Address, mailbox, StringComparison.OrdinalIgnoreCase))) >= count, seconds);
        return MessagesTo(mailbox);
    }

    public Task DisposeAsync()
    {
        Stop();
        TempDir.Delete(_dir);
        return Task.CompletedTask;
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
