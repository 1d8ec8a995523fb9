using System.Net.Sockets;
using System.Text.RegularExpressions;
using MailKit;
using MailKit.Net.Smtp;
using MailKit.Security;
using MimeKit;

namespace CertPortal.Mail;

/// <summary>The SMTP server could not be reached or would not talk to us: every message waits for the next try.</summary>
/// <param name="refusesService">The server refused this service itself (<see cref="SmtpSender.RefusesService"/>, or a 5xx at
/// connection, login or MAIL FROM): a configuration problem only an operator can fix. Retried as an outage is, so that one
/// misconfiguration does not fail every queued message and erase every invitation's link.</param>
public sealed class SmtpUnavailableException(string message, Exception? inner, bool refusesService = false) : Exception(message, inner)
{
    public bool RefusesService { get; } = refusesService;
}

/// <summary>A 5xx that refused one message for good, unless <see cref="OrRefusesService"/> says it may not have.</summary>
/// <param name="Reply">The server's answer, code first.</param>
/// <param name="AtRecipient">Refused at RCPT: the server never took the recipient (false: it took it and refused the content).</param>
/// <param name="OrRefusesService">Set for a security or policy refusal at RCPT (<see cref="SmtpSender.RefusesService"/>): it may
/// refuse this recipient (5.7.1 "Recipient address rejected: Access denied" for one mailbox) or this service (relaying
/// denied for every one), and only the server's answer to another recipient tells which (<see cref="MailOutbox"/>); the
/// outage to report if it is the service.</param>
public sealed record SmtpRefusal(string Reply, bool AtRecipient, SmtpUnavailableException? OrRefusesService = null);

/// <summary>One SMTP session (MailKit) for a pass over the outbox: connect, authenticate, send several messages.
/// Sorts failures into "the server is unavailable" (retry everything later: down, 4xx, or refusing this service for a
/// configuration reason) and "this message was refused" (a 5xx about its recipient or its content: retrying would not
/// help). Every step ends by a deadline the caller derives from its lease on the message (<see cref="MailOptions.Lease"/>):
/// MailKit's timeout bounds each operation, not their sum.</summary>
public sealed partial class SmtpSender(MailOptions options, TimeProvider time) : IAsyncDisposable
{
    private readonly SmtpClient _client = new() { Timeout = (int)options.Timeout.TotalMilliseconds };

    /// <param name="sendBy">When this connection must be up or given up (the first message's <paramref name="sendBy"/>).</param>
    /// <exception cref="SmtpUnavailableException">Not reachable, TLS or authentication failed, refused (5xx greeting or EHLO), or not done
    /// by <paramref name="sendBy"/>.</exception>
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
            throw Unavailable(e);
        }
    }

    /// <param name="sendBy">When this node's hold on the message ends (its lease less <see cref="MailOptions.LeaseMargin"/>): the
    /// send is given up then, whatever step it is at, and the connection closed, so it never overlaps another node's send.</param>
    /// <returns>Null when sent; otherwise how the server refused this message (for good, or perhaps this service at RCPT).</returns>
    /// <exception cref="SmtpUnavailableException">The connection broke, the server refused temporarily (4xx) or refused this
    /// service (our sender, our login, our domain's authentication), or it was too slow to finish by <paramref name="sendBy"/>.</exception>
    public async Task<SmtpRefusal?> SendAsync(MimeMessage message, DateTimeOffset sendBy, CancellationToken ct)
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
        // 5xx for the recipient (RCPT: 5.1.1 no such user, 5.2.2 mailbox full) or for this message after DATA (a content
        // filter, a size limit): this message will never go, but the next may. Treated as the server being down, one such
        // message was retried for ever and, as every pass stops at the first "down", held back every message queued after
        // it. A 5xx at RCPT that may refuse the service (5.7.1 relaying denied) comes back with the outage it would be, for
        // the outbox to tell apart: failing every message on it erased every invitation's link, retrying a refusal of one
        // mailbox kept that message for ever. A 5xx for the sender (MAIL FROM: Mail:From) and a refusal of our domain's
        // authentication after the content (RefusesSendersAuthentication: DMARC, SPF, DKIM, by code or by name) are
        // "unavailable" below, and every message waits for the configuration to be fixed. Other refusals after the content
        // (5.7.1 spam, a virus, a size limit) stay this message's: they judge what it says, the next message may pass, and
        // retrying the same content would only meet the same verdict while holding back the queue.
        catch (SmtpCommandException e) when ((int)e.StatusCode >= 500 && e.ErrorCode is SmtpErrorCode.RecipientNotAccepted)
        {
            return new SmtpRefusal($"{(int)e.StatusCode} {e.Message}", AtRecipient: true, RefusesService(e.StatusCode, e.Message) ? Unavailable(e) : null);
        }
        catch (SmtpCommandException e) when ((int)e.StatusCode >= 500 && e.ErrorCode is SmtpErrorCode.MessageNotAccepted && !RefusesSendersAuthentication(e.Message))
        {
            return new SmtpRefusal($"{(int)e.StatusCode} {e.Message}", AtRecipient: false);
        }
        catch (Exception e) when (deadline.Passed && IsUnavailable(e, ct))
        {
            // MailKit drops the connection when an operation is cancelled: a message cut off before its final dot is discarded.
            throw LeaseRunningOut("while sending", e);
        }
        catch (Exception e) when (IsUnavailable(e, ct))
        {
            throw Unavailable(e);
        }
    }

    /// <summary>Whether a 5xx at RCPT refuses this service rather than the recipient: an enhanced status of class X.7 (RFC 3463
    /// "security or policy status": 5.7.1 relaying denied, 5.7.0 authentication required), which RFC 2034 puts at the start of
    /// the reply's text, or RFC 4954's authentication replies (530, 534, 535, 538) from a server without enhanced codes. The other
    /// classes name the recipient's address (X.1) or mailbox (X.2). Without an enhanced code only the words can tell: relays
    /// that send none refuse relaying in a few well-known phrasings (<see cref="RelayRefusal"/>), and servers that check SPF at
    /// RCPT name it (<see cref="RefusesSendersAuthentication"/>); any other such reply is the recipient's.</summary>
    public static bool RefusesService(SmtpStatusCode status, string text) =>
        status is SmtpStatusCode.AuthenticationRequired or SmtpStatusCode.AuthenticationMechanismTooWeak
            or SmtpStatusCode.AuthenticationInvalidCredentials or SmtpStatusCode.EncryptionRequiredForAuthenticationMechanism
        || SecurityOrPolicyStatus().IsMatch(text)
        || (!EnhancedStatus().IsMatch(text) && RelayRefusal().IsMatch(text))
        || RefusesSendersAuthentication(text);

    [GeneratedRegex(@"^5\.7\.[0-9]{1,3}(?![0-9])")]
    private static partial Regex SecurityOrPolicyStatus();

    /// <summary>Whether a 5xx after the content refuses our sending domain's authentication rather than the message: RFC 7372's
    /// codes (5.7.20-5.7.22 no passing, acceptable or author-matched DKIM signature, 5.7.23 SPF validation failed, 5.7.24 SPF
    /// validation error, 5.7.25 reverse DNS validation failed, 5.7.26 multiple authentication checks failed, as Gmail answers
    /// a DMARC policy refusal), RFC 7505's 5.7.27 (the sender's domain has a null MX) and RFC 3463's 5.7.7 (message integrity
    /// failure). Every message from Mail:From would meet them: they are fixed in our DNS or the relay's signing, never by
    /// giving up the message. Many servers send the same refusal without an enhanced code or with another X.7 one: Gmail's
    /// "5.7.1 Unauthenticated email ... due to domain's DMARC policy" (its code before RFC 7372's), Microsoft 365's "5.7.509
    /// ... does not pass DMARC verification", Postfix's policyd-spf "SPF fail - not authorized" where codes are off: then the
    /// words decide (<see cref="SendersAuthentication"/>), unless an enhanced code of another class (5.1.1, 5.2.2) says the
    /// refusal is about something else.</summary>
    public static bool RefusesSendersAuthentication(string text) => SendersAuthenticationStatus().IsMatch(text)
        || ((!EnhancedStatus().IsMatch(text) || SecurityOrPolicyStatus().IsMatch(text)) && SendersAuthentication().IsMatch(text));

    [GeneratedRegex(@"^5\.7\.(7|2[0-7])(?![0-9])")]
    private static partial Regex SendersAuthenticationStatus();

    /// <summary>The names of the checks of a sender's domain: nothing else is called SPF, DKIM or DMARC, while "spam", "policy"
    /// or "unauthenticated" also judge content. Whole words only, so a blocklist named SPFBL stays a verdict on the message;
    /// and not a check reported as passed ("spam; SPF=pass DKIM=pass", as content filters quote them), which refuses nothing of
    /// our domain.</summary>
    [GeneratedRegex(@"\b(SPF|DKIM|DMARC)\b(?!\s*[=:]?\s*pass\b)", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex SendersAuthentication();

    /// <summary>RFC 3463's class.subject.detail at the start of the text (RFC 2034): when there is one, it decides.</summary>
    [GeneratedRegex(@"^[245]\.[0-9]{1,3}\.[0-9]{1,3}(?![0-9])")]
    private static partial Regex EnhancedStatus();

    /// <summary>How relays word "relaying denied" when they send no enhanced status: Postfix's "Relay access denied"
    /// (smtpd_check.c, reject_unauth_destination), sendmail's "Relaying denied" (its check_rcpt ruleset), Exim's "relay not
    /// permitted" (the default configuration's RCPT ACL) and Exchange's "Unable to relay" (which comes with 5.7.1 where codes are
    /// sent). Kept to these: a phrase that only
    /// resembles them stays a refusal of the recipient, as before.</summary>
    [GeneratedRegex(@"\b(relay(ing)?( access)? (denied|not permitted)|unable to relay)\b", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex RelayRefusal();

    /// <summary>A permanent refusal that reaches here (the recipient's and the content's were returned before) is the server
    /// refusing us: a 5xx greeting, EHLO or STARTTLS, a failed login, a 5xx to our sender or to DATA, a 530 "authentication required" anywhere
    /// (MailKit's <see cref="ServiceNotAuthenticatedException"/>), a security or policy refusal at RCPT, or a refusal of our
    /// domain's authentication after the content. A 4xx, a broken
    /// connection or a timeout is an outage.</summary>
    private SmtpUnavailableException Unavailable(Exception e)
    {
        var refusal = e switch
        {
            ServiceNotAuthenticatedException => $"{(int)SmtpStatusCode.AuthenticationRequired} {e.Message}",
            AuthenticationException { InnerException: SmtpCommandException { StatusCode: >= (SmtpStatusCode)500 } } => e.Message, // "535: 5.7.8 ..."
            SmtpCommandException { StatusCode: >= (SmtpStatusCode)500 } c => $"{(int)c.StatusCode} {c.Message}",
            _ => null,
        };
        var where = e is SmtpCommandException a && RefusesSendersAuthentication(a.Message)
            ? "the SPF, DKIM and DMARC records of Mail:From's domain, or the server's signing for it"
            : "Mail:From, Mail:UserName and Mail:Password, or the server's rules for this host";
        var unlessRecipient = e is SmtpCommandException { ErrorCode: SmtpErrorCode.RecipientNotAccepted }
            ? " Unless it refuses only this recipient: then it fails once the server takes another recipient right after it."
            : "";
        return refusal is null
            ? new SmtpUnavailableException($"SMTP server {options.Host}:{options.EffectivePort}: {e.Message}", e)
            : new SmtpUnavailableException($"SMTP server {options.Host}:{options.EffectivePort} refuses this service: {refusal}. A configuration " +
                $"problem ({where}): messages are kept and retried.{unlessRecipient}", e, refusesService: true);
    }

    private SmtpUnavailableException LeaseRunningOut(string step, Exception? inner) => new(
        $"SMTP server {options.Host}:{options.EffectivePort} too slow: the send was given up {step}, as this node's lease on the message " +
        $"ran out (Mail:Lease less Mail:LeaseMargin), so that no other node sends it meanwhile.", inner);

    /// <summary>Cancels at <c>sendBy</c> on this node's clock (the caller's reading of its lease's end, <see cref="Data.LeaseTime.Own"/>),
    /// or when the caller's token does.</summary>
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
