using System.Text.RegularExpressions;
using CertPortal.Data;
using CertPortal.Mail;

namespace CertPortal.Tests.Mail;

/// <summary>What a notice tells a person their digital ID no longer does, or does again, is what that ID did: a signing ID was
/// nobody's to encrypt to, and an encryption ID signed nothing. A notice that spoke of both sent the holder of a signing ID
/// looking for encrypted mail to keep a key for, and the holder of an encryption ID to stop signing with it.</summary>
public sealed partial class MailWordingTests
{
    private static readonly DateTimeOffset At = new(2026, 12, 7, 12, 0, 0, TimeSpan.Zero);

    public static TheoryData<string, string?, string?> Notices() => new()
    {
        { OutboundMessageKinds.RevocationNotice, "keyCompromise", null },
        { OutboundMessageKinds.RevocationNotice, "affiliationChanged", null },
        { OutboundMessageKinds.RevocationNotice, "superseded", "0123AB" },
        { OutboundMessageKinds.HoldNotice, "certificateHold", null },
        { OutboundMessageKinds.ReleaseNotice, null, null },
        { OutboundMessageKinds.ExpiryReminder, null, null },
    };

    [Theory]
    [MemberData(nameof(Notices))]
    public void A_notice_speaks_of_the_uses_its_id_had_and_of_no_other(string kind, string? reason, string? renewedBy)
    {
        foreach (var profile in new[] { "signing", "encryption", "dual" })
        {
            var model = new MessageModel("pat@example.test", "Pat", profile, "7F01", NotAfter: At.AddDays(30), Days: 30, Reason: reason, At: At,
                RenewedBy: renewedBy);
            var text = MailTemplates.Render(kind, model, null, "Example Org").Text;
            var signs = Signing().IsMatch(text);
            var encrypts = Encrypting().IsMatch(text);
            Assert.True(profile != "encryption" || !signs, $"{kind} for an encryption ID speaks of signing:\n{text}");
            Assert.True(profile != "signing" || !encrypts, $"{kind} for a signing ID speaks of encrypted mail:\n{text}");
            Assert.True(profile != "dual" || (signs && encrypts), $"{kind} for a dual ID leaves out a use:\n{text}");
        }
    }

    [GeneratedRegex(@"\bsign(s|ed|ing|atures?)?\b", RegexOptions.IgnoreCase)]
    private static partial Regex Signing();

    [GeneratedRegex(@"\bencrypt(s|ed|ion)?\b", RegexOptions.IgnoreCase)]
    private static partial Regex Encrypting();
}
