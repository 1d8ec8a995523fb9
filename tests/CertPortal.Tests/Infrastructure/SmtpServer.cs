using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MimeKit;

namespace CertPortal.Tests.Infrastructure;

/// <summary>A real SMTP server (Debian's python3-aiosmtpd) on a free loopback port that delivers every message
/// into a maildir, where tests read what people would receive. It can be stopped and started again on the same
/// port, as an outage would. A message to a mailbox whose local part begins with <see cref="RefusedAfterData"/> is
/// accepted at RCPT and refused for good after DATA (554 5.7.1), as a content filter refuses one. <see cref="Answer"/> makes it
/// answer MAIL FROM, RCPT TO or the message's final dot with a refusal the test chooses (a relay denying relaying, a mailbox that
/// does not exist, a DMARC policy refusing our domain).</summary>
public sealed class SmtpServer : IAsyncLifetime
{
    private const string Python = "/usr/bin/python3";
    private readonly string _dir = TempDir.Create("smtp");
    private Process? _process;
    private readonly Dictionary<string, string> _answers = new(StringComparer.Ordinal);

    public const string RefusedAfterData = "refused-after-data";

    private const string AnswersFile = "answers";

    /// <summary>aiosmtpd's Mailbox handler with the refusal after DATA and the scripted answers (aiosmtpd's -c takes a handler
    /// class by module path). The script is read at each command, so a test changes the running server's answers.</summary>
    private const string Handler = $$"""
        import os
        from aiosmtpd.handlers import Mailbox
        from aiosmtpd.smtp import MISSING

        ANSWERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "{{AnswersFile}}")

        def scripted(command):
            try:
                with open(ANSWERS) as f:
                    for line in f:
                        verb, _, reply = line.rstrip("\n").partition(" ")
                        if verb == command:
                            return reply
            except FileNotFoundError:
                pass
            return MISSING

        class RefusingMailbox(Mailbox):
            async def handle_MAIL(self, server, session, envelope, address, mail_options):
                return scripted("MAIL")

            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                answer = scripted("RCPT:" + address.lower())
                return answer if answer is not MISSING else scripted("RCPT")

            async def handle_DATA(self, server, session, envelope):
                answer = scripted("DATA")
                if answer is not MISSING:
                    return answer
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

    /// <summary>From now on answers <paramref name="command"/> ("MAIL", "RCPT", or "DATA" for the answer after the final dot)
    /// with <paramref name="reply"/>, e.g. "550 5.7.1 Relaying denied", instead of accepting; null: accepts it again. Takes
    /// effect at the next command.</summary>
    /// <param name="recipient">Only for RCPT TO this mailbox (it takes precedence over an answer to every RCPT).</param>
    public void Answer(string command, string? reply, string? recipient = null)
    {
        var key = recipient is null ? command : $"{command}:{recipient.ToLowerInvariant()}";
        lock (_answers)
        {
            if (reply is null) _answers.Remove(key); else _answers[key] = reply;
            var path = Path.Combine(_dir, AnswersFile);
            File.WriteAllLines(path + ".new", _answers.Select(a => $"{a.Key} {a.Value}"));
            File.Move(path + ".new", path, overwrite: true);
        }
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
