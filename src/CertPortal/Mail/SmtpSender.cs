using System.Net.Sockets;
using MailKit;
using MailKit.Net.Smtp;
using MailKit.Security;
using MimeKit;

namespace CertPortal.Mail;

/// <summary>The SMTP server could not be reached or would not talk to us: every message waits for the next try.</summary>
public sealed class SmtpUnavailableException(string message, Exception? inner) : Exception(message, inner);

/// <summary>One SMTP session (MailKit) for a pass over the outbox: connect, authenticate, send several messages.
/// Sorts failures into "the server is unavailable" (retry everything later) and "this message was refused"
/// (a 5xx for its recipient: retrying would not help). Every step ends by a deadline the caller derives from its lease
/// on the message (<see cref="MailOptions.Lease"/>): MailKit's timeout bounds each operation, not their sum.</summary>
public sealed class SmtpSender(MailOptions options, TimeProvider time) : IAsyncDisposable
{
    private readonly SmtpClient _client = new() { Timeout = (int)options.Timeout.TotalMilliseconds };

    /// <param name="sendBy">When this connection must be up or given up (the first message's <paramref name="sendBy"/>).</param>
    /// <exception cref="SmtpUnavailableException">Not reachable, TLS or authentication failed, or not done by <paramref name="sendBy"/>.</exception>
    public async Task ConnectAsync(DateTimeOffset sendBy, CancellationToken ct)
    {
        using var deadline = new SendDeadline(time, sendBy, ct);
        try
        {
            var socketOptions = options.Security switch
            {
                SmtpSecurity.None => SecureSocketOptions.None,
                SmtpSecurity.Tls => SecureSocketOptions.SslOnConnect,
                _ => SecureSocketOptions.StartTls,
            };
            await _client.ConnectAsync(options.Host, options.EffectivePort, socketOptions, deadline.Token);
            if (!string.IsNullOrEmpty(options.UserName))
                await _client.AuthenticateAsync(options.UserName, options.Password, deadline.Token);
        }
        catch (Exception e) when (deadline.Passed && IsUnavailable(e, ct))
        {
            throw LeaseRunningOut("while connecting", e);
        }
        catch (Exception e) when (IsUnavailable(e, ct))
        {
            // MailKit's messages name the host and the failing step, never the password.
            throw new SmtpUnavailableException($"SMTP server {options.Host}:{options.EffectivePort}: {e.Message}", e);
        }
    }

    /// <param name="sendBy">When this node's hold on the message ends (its lease less <see cref="MailOptions.LeaseMargin"/>): the
    /// send is given up then, whatever step it is at, and the connection closed, so it never overlaps another node's send.</param>
    /// <returns>Null when sent; otherwise why the server refused this message for good.</returns>
    /// <exception cref="SmtpUnavailableException">The connection broke, the server refused temporarily (4xx), or it was too
    /// slow to finish by <paramref name="sendBy"/>.</exception>
    public async Task<string?> SendAsync(MimeMessage message, DateTimeOffset sendBy, CancellationToken ct)
    {
        using var deadline = new SendDeadline(time, sendBy, ct);
        // The server takes the message at the final dot (RFC 5321 4.1.1.4) and says so in its answer. The dot goes only while
        // a whole Timeout remains before sendBy, so that answer is read before the deadline or the server took too long and
        // it counts as lost: the one duplicate left is a message the server took whose answer never came.
        var lastDot = sendBy - options.Timeout;
        if (time.GetUtcNow() > lastDot) throw LeaseRunningOut("before the message was started", null);
        try
        {
            await _client.SendAsync(message, deadline.Token, new FinalDotGate(time, lastDot, deadline));
            return null;
        }
        // 5xx for the recipient (RCPT) or for this message after DATA (a content filter, a size limit): this message will never
        // go, but the next may. Treated as the server being down, one such message was retried for ever and, as every pass
        // stops at the first "down", held back every message queued after it. A 5xx for the sender (MAIL FROM) is still
        // "unavailable": it is the configuration's (Mail:From), and every message waits for it to be fixed.
        catch (SmtpCommandException e) when ((int)e.StatusCode >= 500 && e.ErrorCode is SmtpErrorCode.RecipientNotAccepted or SmtpErrorCode.MessageNotAccepted)
        {
            return $"{(int)e.StatusCode} {e.Message}";
        }
        catch (Exception e) when (deadline.Passed && IsUnavailable(e, ct))
        {
            // MailKit drops the connection when an operation is cancelled: a message cut off before its final dot is discarded.
            throw LeaseRunningOut("while sending", e);
        }
        catch (Exception e) when (IsUnavailable(e, ct))
        {
            throw new SmtpUnavailableException($"SMTP server {options.Host}:{options.EffectivePort}: {e.Message}", e);
        }
    }

    private SmtpUnavailableException LeaseRunningOut(string step, Exception? inner) => new(
        $"SMTP server {options.Host}:{options.EffectivePort} too slow: the send was given up {step}, as this node's lease on the message " +
        $"ran out (Mail:Lease less Mail:LeaseMargin), so that no other node sends it meanwhile.", inner);

    /// <summary>Cancels at <c>sendBy</c> on the clock the lease was written with, or when the caller's token does.</summary>
    private sealed class SendDeadline : IDisposable
    {
        private readonly CancellationTokenSource _atDeadline;
        private readonly CancellationTokenSource _either;

        public SendDeadline(TimeProvider time, DateTimeOffset sendBy, CancellationToken ct)
        {
            var left = sendBy - time.GetUtcNow();
            _atDeadline = new CancellationTokenSource(left > TimeSpan.Zero ? left : TimeSpan.Zero, time);
            _either = CancellationTokenSource.CreateLinkedTokenSource(ct, _atDeadline.Token);
        }

        public CancellationToken Token => _either.Token;

        /// <summary>The deadline, not the caller, stopped the send (at its time, or early by <see cref="FinalDotGate"/>).</summary>
        public bool Passed => _atDeadline.IsCancellationRequested;

        public void GiveUpNow() => _atDeadline.Cancel();

        public void Dispose()
        {
            _either.Dispose();
            _atDeadline.Dispose();
        }
    }

    /// <summary>MailKit reports each write of the message's content (<see cref="ITransferProgress"/>), and the final dot follows the
    /// last one; once past <c>lastDot</c> the send is cancelled there, so the dot is never written and the server discards the
    /// message with the dropped connection.</summary>
    private sealed class FinalDotGate(TimeProvider time, DateTimeOffset lastDot, SendDeadline deadline) : ITransferProgress
    {
        public void Report(long bytesTransferred, long totalSize) => Check();
        public void Report(long bytesTransferred) => Check();

        private void Check()
        {
            if (time.GetUtcNow() > lastDot) deadline.GiveUpNow();
        }
    }

    /// <summary>Everything MailKit throws when the server is down, slow, refuses TLS or our login, or answers 4xx.
    /// A cancellation is ours (shutdown) only when our token asked for it; otherwise it is a timeout.</summary>
    private static bool IsUnavailable(Exception e, CancellationToken ct) => e is SocketException or IOException or SmtpCommandException
        or SmtpProtocolException or AuthenticationException or SslHandshakeException or ServiceNotConnectedException
        or ServiceNotAuthenticatedException or NotSupportedException or TimeoutException
        || (e is OperationCanceledException && !ct.IsCancellationRequested);

    public async ValueTask DisposeAsync()
    {
        if (_client.IsConnected)
        {
            try { await _client.DisconnectAsync(quit: true, CancellationToken.None); }
            catch (Exception e) when (IsUnavailable(e, CancellationToken.None)) { /* the messages went out; a failed QUIT changes nothing */ }
        }
        _client.Dispose();
    }
}
