using System.Net.Sockets;
using MailKit;
using MailKit.Net.Smtp;
using MailKit.Security;
using MimeKit;

namespace CertPortal.Mail;

/// <summary>The SMTP server could not be reached or would not talk to us: every message waits for the next try.</summary>
public sealed class SmtpUnavailableException(string message, Exception inner) : Exception(message, inner);

/// <summary>One SMTP session (MailKit) for a pass over the outbox: connect, authenticate, send several messages.
/// Sorts failures into "the server is unavailable" (retry everything later) and "this message was refused"
/// (a 5xx for its recipient: retrying would not help).</summary>
public sealed class SmtpSender(MailOptions options) : IAsyncDisposable
{
    private readonly SmtpClient _client = new() { Timeout = (int)options.Timeout.TotalMilliseconds };

    /// <exception cref="SmtpUnavailableException">Not reachable, TLS or authentication failed.</exception>
    public async Task ConnectAsync(CancellationToken ct)
    {
        try
        {
            var socketOptions = options.Security switch
            {
                SmtpSecurity.None => SecureSocketOptions.None,
                SmtpSecurity.Tls => SecureSocketOptions.SslOnConnect,
                _ => SecureSocketOptions.StartTls,
            };
            await _client.ConnectAsync(options.Host, options.EffectivePort, socketOptions, ct);
            if (!string.IsNullOrEmpty(options.UserName))
                await _client.AuthenticateAsync(options.UserName, options.Password, ct);
        }
        catch (Exception e) when (IsUnavailable(e, ct))
        {
            // MailKit's messages name the host and the failing step, never the password.
            throw new SmtpUnavailableException($"SMTP server {options.Host}:{options.EffectivePort}: {e.Message}", e);
        }
    }

    /// <returns>Null when sent; otherwise why the server refused this message for good.</returns>
    /// <exception cref="SmtpUnavailableException">The connection broke or the server refused temporarily (4xx).</exception>
    public async Task<string?> SendAsync(MimeMessage message, CancellationToken ct)
    {
        try
        {
            await _client.SendAsync(message, ct);
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
        catch (Exception e) when (IsUnavailable(e, ct))
        {
            throw new SmtpUnavailableException($"SMTP server {options.Host}:{options.EffectivePort}: {e.Message}", e);
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
