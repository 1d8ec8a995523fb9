using System.Text;

namespace CertPortal.Gal;

/// <summary>
/// Escaping of untrusted values before they are placed into LDAP search filters
/// (RFC 4515) and distinguished names (RFC 4514).
/// System.DirectoryServices.Protocols has no escaper of its own, and a mailbox or
/// display name comes from a user, so every value we interpolate goes through here.
/// </summary>
public static class LdapEscaping
{
    // Throws on lone surrogates instead of silently turning them into U+FFFD:
    // a value we cannot encode faithfully must not match a different entry.
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>
    /// Escapes an assertion value for use inside a search filter, e.g. "(mail=" + EscapeFilterValue(x) + ")".
    /// RFC 4515 §3: '*' '(' ')' '\' and NUL must be written as a backslash and two hex digits.
    /// Non-ASCII is also written as \XX per UTF-8 byte (the RFC allows it) so the filter
    /// string stays pure ASCII whatever the client library does with its encoding.
    /// </summary>
    public static string EscapeFilterValue(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var bytes = EncodeStrict(value, nameof(value));
        var sb = new StringBuilder(bytes.Length + 8);
        foreach (var b in bytes)
        {
            if (b is (byte)'\\' or (byte)'*' or (byte)'(' or (byte)')' or 0 || b >= 0x80)
            {
                sb.Append('\\').Append(b.ToString("x2"));
            }
            else
            {
                sb.Append((char)b);
            }
        }
        return sb.ToString();
    }

    /// <summary>
    /// Escapes an attribute value for use as (part of) an RDN, e.g. "mail=" + EscapeDnValue(x) + "," + baseDn.
    /// RFC 4514 §2.4: '"' '+' ',' ';' '&lt;' '&gt;' '\' are escaped with a backslash; a leading
    /// space or '#' and a trailing space are escaped; NUL is written as \00.
    /// '=' is escaped too (allowed by §3 "special"): some older parsers split RDNs on it.
    /// Other ASCII control characters are written as \XX (always allowed) so a DN never
    /// carries raw control bytes into logs. Non-ASCII is left as UTF-8 text, which RFC 4514 permits.
    /// </summary>
    public static string EscapeDnValue(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        EncodeStrict(value, nameof(value)); // reject lone surrogates early
        var sb = new StringBuilder(value.Length + 8);
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            var first = i == 0;
            var last = i == value.Length - 1;
            switch (c)
            {
                case '"' or '+' or ',' or ';' or '<' or '>' or '\\' or '=':
                    sb.Append('\\').Append(c);
                    break;
                case ' ' when first || last:
                    sb.Append("\\ ");
                    break;
                case '#' when first:
                    sb.Append("\\#");
                    break;
                case < ' ' or '\x7f':
                    sb.Append('\\').Append(((int)c).ToString("x2"));
                    break;
                default:
                    sb.Append(c);
                    break;
            }
        }
        return sb.ToString();
    }

    private static byte[] EncodeStrict(string value, string paramName)
    {
        try
        {
            return StrictUtf8.GetBytes(value);
        }
        catch (EncoderFallbackException e)
        {
            throw new ArgumentException("Value is not valid Unicode (unpaired surrogate).", paramName, e);
        }
    }
}
