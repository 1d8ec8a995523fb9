using System.Globalization;

// Namespace CertPortal (not CertPortal.Enrollment) like Outcome: tokens, CSR checks, look-ups,
// the directory and the data model all name mailboxes.
namespace CertPortal;

/// <summary>The one validator for mailboxes: enrollment tokens (API and console), CSR checks and
/// recipient look-ups all accept exactly what a certificate may name as an rfc822Name.
/// <para>Accepted: an RFC 5321 Mailbox whose local part is a dot-atom of ASCII atext (at most 64
/// octets) and whose domain is a host name of letter-digit-hyphen labels (RFC 1123, RFC 5890);
/// a domain written in Unicode is converted to its A-labels (IDNA), because an rfc822Name is an
/// IA5String and S/MIME BR 7.1.2.3 want the A-label form.</para>
/// <para>Refused: address literals (<c>alice@[127.0.0.1]</c>, RFC 5321 §4.1.3: a certificate names a
/// mailbox at a domain, and BR validation is by domain), numeric top-level labels (<c>alice@127.0.0.1</c>),
/// labels that start or end with '-' or hold '_', quoted local parts, and internationalised local
/// parts (SMTPUTF8, RFC 6531): those need an SmtpUTF8Mailbox otherName (RFC 9598) instead of an
/// rfc822Name, which the mail clients we test against cannot match, so they are refused with a
/// message that says so rather than issued in a form no client uses.</para></summary>
public static class Mailbox
{
    /// <summary>RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets.</summary>
    public const int MaxLength = 254;
    public const int MaxLocalPartLength = 64;
    public const int MaxDomainLength = 253;
    public const int MaxLabelLength = 63;

    private const string AtextSymbols = "!#$%&'*+-/=?^_`{|}~";

    private static readonly IdnMapping Idna = new() { UseStd3AsciiRules = true, AllowUnassigned = false };

    /// <summary>Validates and normalises a mailbox: the domain in lower-case A-labels, the local part
    /// kept as written (RFC 5321 local parts are case-sensitive in theory; we compare them
    /// case-insensitively everywhere).</summary>
    public static bool TryNormalize(string? input, out string mailbox, out string error)
    {
        mailbox = "";
        error = "";
        if (string.IsNullOrWhiteSpace(input)) { error = "email is required."; return false; }
        var s = input.Trim();
        if (s.Length > MaxLength) { error = $"email must be at most {MaxLength} characters."; return false; }
        var at = s.LastIndexOf('@');
        if (at <= 0 || at == s.Length - 1 || s.IndexOf('@', StringComparison.Ordinal) != at || s.Any(c => char.IsControl(c) || char.IsWhiteSpace(c)))
        { error = $"'{Sanitize(s)}' is not a mailbox address (local@domain)."; return false; }

        var local = s[..at];
        if (!LocalPartValid(local, s, out error)) return false;
        if (!TryDomain(s[(at + 1)..], s, out var domain, out error)) return false;

        mailbox = local + "@" + domain;
        if (mailbox.Length > MaxLength) { error = $"email must be at most {MaxLength} characters (with the domain in its ASCII form)."; return false; }
        return true;
    }

    private static bool LocalPartValid(string local, string whole, out string error)
    {
        error = "";
        if (local.Any(c => c > 0x7E))
        {
            error = $"'{Sanitize(whole)}' has non-ASCII characters before the @. Internationalised (SMTPUTF8) mailboxes are not supported: " +
                    "a certificate would have to name them as SmtpUTF8Mailbox (RFC 9598), which common mail clients cannot match. Use an ASCII address.";
            return false;
        }
        if (local.StartsWith('"'))
        { error = $"'{Sanitize(whole)}' has a quoted local part; quoted mailboxes are not supported (use letters, digits and {AtextSymbols}.)."; return false; }
        if (local.Length > MaxLocalPartLength)
        { error = $"The part before the @ may be at most {MaxLocalPartLength} characters (RFC 5321)."; return false; }
        if (local.StartsWith('.') || local.EndsWith('.') || local.Contains("..", StringComparison.Ordinal) ||
            !local.All(c => char.IsAsciiLetterOrDigit(c) || c == '.' || AtextSymbols.Contains(c)))
        { error = $"'{Sanitize(whole)}' is not a mailbox address: the part before the @ may hold letters, digits, {AtextSymbols} and single dots between them."; return false; }
        return true;
    }

    private static bool TryDomain(string input, string whole, out string domain, out string error)
    {
        domain = "";
        error = "";
        if (input.StartsWith('['))
        {
            error = $"'{Sanitize(whole)}' names an address literal; a certificate names a mailbox at a domain name, not at an IP address.";
            return false;
        }
        string ascii;
        try
        {
            // Converts U-labels to A-labels and checks LDH syntax (STD3: letters, digits, '-', not at a label's ends).
            ascii = Idna.GetAscii(input).ToLowerInvariant();
        }
        catch (ArgumentException)
        {
            error = $"'{Sanitize(whole)}' is not a mailbox address: the domain must be a host name (labels of letters, digits and '-', not starting or ending with '-', separated by single dots).";
            return false;
        }
        var labels = ascii.Split('.');
        if (ascii.Length > MaxDomainLength || labels.Length < 2 || labels.Any(l => l.Length is 0 or > MaxLabelLength))
        { error = $"'{Sanitize(whole)}' is not a mailbox address: the domain needs at least two labels of 1-{MaxLabelLength} characters (like example.com)."; return false; }
        foreach (var label in labels)
        {
            if (!label.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-') || label.StartsWith('-') || label.EndsWith('-'))
            { error = $"'{Sanitize(whole)}' is not a mailbox address: the domain label '{Sanitize(label)}' is not a host name label."; return false; }
            // RFC 5891 §4.2.3.1: "--" in the third and fourth positions is reserved for A-labels ("xn--").
            if (label.Length >= 4 && label[2] == '-' && label[3] == '-' && !label.StartsWith("xn--", StringComparison.Ordinal))
            { error = $"'{Sanitize(whole)}' is not a mailbox address: the domain label '{Sanitize(label)}' uses the reserved '--' form."; return false; }
        }
        if (labels[^1].All(char.IsAsciiDigit))
        { error = $"'{Sanitize(whole)}' names an IP address, not a domain; a certificate names a mailbox at a domain name."; return false; }
        if (labels.Any(l => l.StartsWith("xn--", StringComparison.Ordinal)))
        {
            try { Idna.GetUnicode(ascii); }
            catch (ArgumentException)
            { error = $"'{Sanitize(whole)}' is not a mailbox address: an xn-- label of the domain is not valid punycode (IDNA)."; return false; }
        }
        domain = ascii;
        return true;
    }

    public static string Domain(string mailbox) => mailbox[(mailbox.LastIndexOf('@') + 1)..];

    /// <summary>Allowed domains may be configured in Unicode or A-labels; mailboxes are normalised to A-labels.</summary>
    public static bool DomainAllowed(string mailbox, IReadOnlyCollection<string> allowed)
    {
        if (allowed.Count == 0) return true;
        var domain = Domain(mailbox);
        foreach (var configured in allowed)
            if (string.Equals(AllowedForm(configured), domain, StringComparison.OrdinalIgnoreCase)) return true;
        return false;
    }

    // Asked at token creation and again at every issuance (a domain taken off the list gets nothing more): each configured
    // domain is mapped to its A-labels once, not per enrollment. Keys are configuration values only, so the map stays small.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> AllowedForms = new();

    private static string AllowedForm(string configured) => AllowedForms.GetOrAdd(configured, d => AsciiDomain(d.Trim().TrimStart('.')));

    private static string AsciiDomain(string domain)
    {
        try { return Idna.GetAscii(domain); }
        catch (ArgumentException) { return domain; } // not a host name: then it matches no normalised mailbox
    }

    /// <summary>Keeps client input echoed in an error readable and short.</summary>
    public static string Sanitize(string s) =>
        new string(s.Take(80).Select(c => char.IsControl(c) ? '?' : c).ToArray()) + (s.Length > 80 ? "…" : "");
}
