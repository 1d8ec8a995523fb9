using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using CertPortal.Authority;
using CertPortal.Data;

namespace CertPortal.Mail;

/// <summary>What a message says, stored with it as JSON. Nothing here is secret: the enrollment link, the
/// only secret a message carries, is kept apart (sealed) and given to <see cref="MailTemplates.Render"/>.</summary>
public sealed record MessageModel(
    string Email,
    string DisplayName,
    string? Profile = null,
    string? SerialNumber = null,
    DateTimeOffset? ExpiresAt = null,
    DateTimeOffset? NotAfter = null,
    string? Reason = null,
    int? Days = null,
    DateTimeOffset? At = null,
    string? RenewalUrl = null)
{
    public string ToJson() => JsonSerializer.Serialize(this, JsonSerializerOptions.Web);
    public static MessageModel FromJson(string json) => JsonSerializer.Deserialize<MessageModel>(json, JsonSerializerOptions.Web)!;
}

/// <summary>A rendered message: the same paragraphs as plain text and as HTML.</summary>
public sealed record RenderedMessage(string Subject, string Text, string Html);

/// <summary>The messages people receive, in the organisation's name. Plain sentences that say what happened,
/// what it means and what to do; the one link (an invitation's) is written out in full in the text part, so
/// a reader can check where it goes before opening it.</summary>
public static class MailTemplates
{
    public static string Subject(string kind, MessageModel m, string organization) => kind switch
    {
        OutboundMessageKinds.Invitation => $"{organization}: your digital ID for {m.Email}",
        OutboundMessageKinds.ExpiryReminder => $"Your digital ID for {m.Email} expires in {m.Days} days",
        OutboundMessageKinds.RevocationNotice => $"Your digital ID for {m.Email} has been revoked",
        OutboundMessageKinds.HoldNotice => $"Your digital ID for {m.Email} has been suspended",
        OutboundMessageKinds.ReleaseNotice => $"Your digital ID for {m.Email} is valid again",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown message kind"),
    };

    /// <param name="link">The enrollment link of an invitation; null for every other kind.</param>
    public static RenderedMessage Render(string kind, MessageModel m, string? link, string organization)
    {
        // A reminder's renewal link is no secret (the person proves their key on that page); it is shown the same way.
        var label = link is null ? "Renew your digital ID" : "Get your digital ID";
        link ??= kind == OutboundMessageKinds.ExpiryReminder ? m.RenewalUrl : null;
        var greeting = string.IsNullOrWhiteSpace(m.DisplayName) ? "Hello," : $"Hello {m.DisplayName},";
        var (before, after) = Paragraphs(kind, m, organization);
        var text = new StringBuilder().Append(greeting).Append("\n\n");
        var html = new StringBuilder("<!DOCTYPE html><html><body style=\"font-family:sans-serif;line-height:1.4\">")
            .Append("<p>").Append(Encode(greeting)).Append("</p>");
        foreach (var p in before) Paragraph(p);
        if (link is not null)
        {
            text.Append(link).Append("\n\n");
            html.Append("<p><a href=\"").Append(Encode(link)).Append("\">").Append(label).Append("</a></p>")
                .Append("<p style=\"font-size:90%;color:#555\">").Append(Encode(link)).Append("</p>");
        }
        foreach (var p in after) Paragraph(p);
        text.Append("-- \n").Append(organization).Append('\n');
        html.Append("<p>").Append(Encode(organization)).Append("</p></body></html>");
        return new RenderedMessage(Subject(kind, m, organization), text.ToString(), html.ToString());

        void Paragraph(string p)
        {
            text.Append(p).Append("\n\n");
            html.Append("<p>").Append(Encode(p)).Append("</p>");
        }
    }

    private static (string[] Before, string[] After) Paragraphs(string kind, MessageModel m, string organization)
    {
        var certificate = $"certificate {m.SerialNumber}";
        return kind switch
        {
            OutboundMessageKinds.Invitation => (
                [
                    $"{organization} invites you to get your digital ID (an S/MIME certificate) for {m.Email}, for {ProfileWords(m.Profile)}.",
                    $"Open this link in your browser before {Time(m.ExpiresAt)} and follow the steps. Your browser creates the key; it never leaves your computer unless you save it.",
                ],
                [
                    "The link works once and only for you: do not forward this message. If you did not expect it, do not open the link and tell your administrator.",
                ]),
            OutboundMessageKinds.ExpiryReminder => (
                [
                    $"Your digital ID for {m.Email} ({certificate}) expires on {Time(m.NotAfter)}, in {m.Days} days. After that you can no longer sign mail with it, and others cannot encrypt new mail to you with it.",
                    m.RenewalUrl is null
                        ? "To renew it, ask your administrator for a new invitation: you will receive a link by e-mail and get a new digital ID in your browser."
                        : "To renew it yourself, open this page in your browser and choose your current digital ID file (.p12) with its password. The file never leaves your computer; the page makes your new digital ID there.",
                ],
                [
                    "Keep your current digital ID after it expires: you still need its key to read mail that was encrypted to it.",
                ]),
            OutboundMessageKinds.RevocationNotice => (
                [
                    $"Your digital ID for {m.Email} ({certificate}) was revoked on {Time(m.At)}{ReasonWords(m.Reason)}. Mail clients no longer accept signatures made with it, and others can no longer encrypt mail to you with it.",
                    m.Reason == RevocationReason.KeyCompromise.ToRfcName()
                        ? "Its key may be known to someone else: stop using it to sign, and remove it from your mail program once you have read the mail encrypted to it."
                        : "Stop using it to sign. Keep it to read mail that was encrypted to it.",
                    "To get a new digital ID, ask your administrator for an invitation. If you did not expect this, contact your administrator.",
                ],
                []),
            OutboundMessageKinds.HoldNotice => (
                [
                    $"Your digital ID for {m.Email} ({certificate}) was suspended (put on hold) on {Time(m.At)}. While it is suspended, mail clients do not accept signatures made with it.",
                    "A suspension can be lifted: your administrator will tell you when it is, or revoke it for good. If you did not expect this, contact your administrator.",
                ],
                []),
            OutboundMessageKinds.ReleaseNotice => (
                [
                    $"The suspension of your digital ID for {m.Email} ({certificate}) was lifted on {Time(m.At)}: you can sign and receive encrypted mail with it again.",
                ],
                []),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown message kind"),
        };
    }

    private static string Encode(string s) => WebUtility.HtmlEncode(s);

    private static string Time(DateTimeOffset? t) =>
        t?.UtcDateTime.ToString("d MMMM yyyy, HH:mm 'UTC'", CultureInfo.InvariantCulture) ?? "";

    private static string ProfileWords(string? profile) => profile switch
    {
        "signing" => "signing mail",
        "encryption" => "receiving encrypted mail",
        _ => "signing mail and receiving encrypted mail",
    };

    private static string ReasonWords(string? reason) =>
        RevocationReasons.TryParse(reason, out var r) ? r switch
        {
            RevocationReason.KeyCompromise => " because its key may have been compromised",
            RevocationReason.AffiliationChanged => " because your affiliation changed",
            RevocationReason.Superseded => " because it was replaced by a newer one",
            RevocationReason.CessationOfOperation => " because it is no longer needed",
            RevocationReason.PrivilegeWithdrawn => " because the permission to use it was withdrawn",
            _ => "",
        } : "";
}
