using System.Globalization;
using System.Text;
using CertPortal.Authority;

namespace CertPortal.Gal;

/// <summary>
/// Whether two distinguished names written as strings (RFC 4514) name the same entry, for comparing a group's member values
/// with the DNs of the entries a search returns. Directories hand both out as stored: slapd rewrites them into its own form
/// (short lower-case types, <c>\2C</c>, sorted multi-valued RDNs) but keeps each value's case and inner spaces as written, and
/// a groupOfUniqueNames value may end in an optional UID; other servers may keep every detail as written.
/// <para>Handled, a subset of RFC 4517 distinguishedNameMatch: attribute types ignoring case, with the usual names and their
/// OIDs (also "OID."-prefixed) taken as one; spaces around <c>=</c>, <c>,</c> and <c>+</c>; <c>;</c> as a separator and
/// quoted values (RFC 2253/1779 forms that slapd still accepts); escapes as <c>\,</c> or <c>\2C</c>, and UTF-8 written as hex
/// escapes; multi-valued RDNs in any order; values compared as caseIgnoreMatch does after a simplified RFC 4518 preparation
/// (NFKC, white space as space, other control characters dropped, invariant lower case, insignificant spaces: leading and
/// trailing ones dropped, inner runs as one).</para>
/// <para>Not handled: each attribute's own matching rule. Every value is compared ignoring case, so two entries whose DNs
/// differ only in the case of a case-exact naming attribute (rare: the naming attributes in use, cn, ou, o, dc, uid, l, st, c,
/// are all case-ignore) would be taken as one; the bias is deliberate, as a member missed has their invitation withdrawn.
/// Numeric-string or telephone-number rules (spaces and hyphens insignificant) are not applied; RFC 4518's full mapping and
/// prohibition tables are not either. A <c>#</c>-hex (BER) value is compared as its hex text, not decoded, so it equals
/// only the same encoding. A string that does not parse as a DN is compared whole, prepared as a value is (case and extra spaces
/// ignored), and never equals one that parses.</para>
/// </summary>
public static class DistinguishedNameMatch
{
    /// <summary>Attribute types seen in naming, by lower-case name or alias, to the name their key uses.</summary>
    private static readonly Dictionary<string, string> TypeNames = new(StringComparer.OrdinalIgnoreCase)
    {
        ["cn"] = "cn", ["commonName"] = "cn", [Oids.CommonName] = "cn",
        ["sn"] = "sn", ["surname"] = "sn", [Oids.Surname] = "sn",
        ["serialNumber"] = "serialnumber", [Oids.SerialNumberAttribute] = "serialnumber",
        ["c"] = "c", ["countryName"] = "c", [Oids.CountryName] = "c",
        ["l"] = "l", ["localityName"] = "l", [Oids.LocalityName] = "l",
        ["st"] = "st", ["stateOrProvinceName"] = "st", [Oids.StateOrProvinceName] = "st",
        ["street"] = "street", ["streetAddress"] = "street", [Oids.StreetAddress] = "street",
        ["o"] = "o", ["organizationName"] = "o", [Oids.OrganizationName] = "o",
        ["ou"] = "ou", ["organizationalUnitName"] = "ou", [Oids.OrganizationalUnitName] = "ou",
        ["title"] = "title", [Oids.Title] = "title",
        ["givenName"] = "givenname", ["gn"] = "givenname", [Oids.GivenName] = "givenname",
        ["uid"] = "uid", ["userid"] = "uid", [Oids.UserId] = "uid",
        ["dc"] = "dc", ["domainComponent"] = "dc", [Oids.DomainComponent] = "dc",
        ["mail"] = "mail", ["rfc822Mailbox"] = "mail", [Oids.Mail] = "mail",
        ["email"] = "email", ["emailAddress"] = "email", [Oids.EmailAddress] = "email",
    };

    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> name the same entry (see the class's remarks for how far).</summary>
    public static bool Equal(string a, string b) => string.Equals(Key(a), Key(b), StringComparison.Ordinal);

    /// <summary>A string equal (ordinal) for DNs that match: its RDNs in order, each RDN's attribute-value pairs sorted, types as
    /// one name, values prepared and re-escaped so that no value can pass for a separator.</summary>
    public static string Key(string dn)
    {
        ArgumentNullException.ThrowIfNull(dn);
        return TryParse(dn, out var rdns)
            ? string.Join(',', rdns.Select(rdn => string.Join('+', rdn.Order(StringComparer.Ordinal))))
            : "!" + Prepare(dn);
    }

    /// <summary>The DN of a groupOfUniqueNames value (nameAndOptionalUID, RFC 4517 3.3.21): without the optional
    /// <c>#'0101'B</c> UID that may follow it.</summary>
    public static string WithoutOptionalUid(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var trimmed = value.TrimEnd();
        if (!trimmed.EndsWith("'B", StringComparison.Ordinal)) return value;
        var hash = trimmed.LastIndexOf("#'", StringComparison.Ordinal);
        if (hash <= 0 || trimmed[hash - 1] == '\\') return value;
        var bits = trimmed.AsSpan(hash + 2, trimmed.Length - hash - 4);
        return bits.ContainsAnyExcept('0', '1') ? value : trimmed[..hash];
    }

    private static bool TryParse(string dn, out List<List<string>> rdns)
    {
        rdns = [];
        var i = SkipSpaces(dn, 0);
        if (i == dn.Length) return true; // the empty DN (the root DSE)
        while (true)
        {
            var rdn = new List<string>();
            while (true)
            {
                if (!TryParseAva(dn, ref i, out var ava)) return false;
                rdn.Add(ava);
                i = SkipSpaces(dn, i);
                if (i < dn.Length && dn[i] == '+') { i++; continue; }
                break;
            }
            rdns.Add(rdn);
            if (i == dn.Length) return true;
            if (dn[i] is not (',' or ';')) return false;
            i++;
        }
    }

    private static bool TryParseAva(string dn, ref int i, out string ava)
    {
        ava = "";
        i = SkipSpaces(dn, i);
        var equals = dn.IndexOf('=', i);
        if (equals < 0) return false;
        var type = dn[i..equals].Trim();
        if (type.StartsWith("oid.", StringComparison.OrdinalIgnoreCase)) type = type[4..];
        if (type.Length == 0 || !(IsDescriptor(type) || IsNumericOid(type))) return false;
        type = TypeNames.TryGetValue(type, out var name) ? name : type.ToLowerInvariant();
        i = SkipSpaces(dn, equals + 1);
        if (i < dn.Length && dn[i] == '#')
        {
            var start = ++i;
            while (i < dn.Length && Uri.IsHexDigit(dn[i])) i++;
            // Unescaped in the key: an escaped value can never start with '#', so a BER value stays apart from the string "#...".
            ava = type + "=#" + dn[start..i].ToLowerInvariant();
            return true;
        }
        if (!TryReadString(dn, ref i, out var value)) return false;
        ava = type + "=" + EscapeForKey(value);
        return true;
    }

    /// <summary>A value up to the next unescaped separator (or the closing quote of a quoted one), escapes undone, prepared.</summary>
    private static bool TryReadString(string dn, ref int i, out string value)
    {
        value = "";
        var quoted = i < dn.Length && dn[i] == '"';
        if (quoted) i++;
        var bytes = new List<byte>();
        Span<byte> utf8 = stackalloc byte[4];
        while (i < dn.Length)
        {
            var c = dn[i];
            if (quoted ? c == '"' : c is ',' or ';' or '+') break;
            if (c == '\\')
            {
                if (i + 1 >= dn.Length) return false;
                if (i + 2 < dn.Length && Uri.IsHexDigit(dn[i + 1]) && Uri.IsHexDigit(dn[i + 2]))
                {
                    bytes.Add(byte.Parse(dn.AsSpan(i + 1, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                    i += 3;
                    continue;
                }
                i++; // an escaped character stands for itself
            }
            if (Rune.DecodeFromUtf16(dn.AsSpan(i), out var rune, out var used) != System.Buffers.OperationStatus.Done) return false;
            var n = rune.EncodeToUtf8(utf8);
            for (var k = 0; k < n; k++) bytes.Add(utf8[k]);
            i += used;
        }
        if (quoted)
        {
            if (i == dn.Length) return false;
            i = SkipSpaces(dn, i + 1);
        }
        value = Prepare(Encoding.UTF8.GetString([.. bytes]));
        return true;
    }

    /// <summary>caseIgnoreMatch's preparation, simplified (RFC 4518 2.2, 2.3, 2.6.1): compatibility forms (NFKC), white-space
    /// characters (tab, line breaks, no-break and other separators) as spaces, other control characters dropped, lower case,
    /// leading and trailing spaces dropped and inner runs of spaces as one.</summary>
    private static string Prepare(string value)
    {
        var s = value.Normalize(NormalizationForm.FormKC).ToLowerInvariant();
        var sb = new StringBuilder(s.Length);
        var space = false;
        foreach (var c in s)
        {
            if (char.IsWhiteSpace(c))
            {
                space = sb.Length > 0;
                continue;
            }
            if (char.IsControl(c)) continue;
            if (space) sb.Append(' ');
            space = false;
            sb.Append(c);
        }
        return sb.ToString();
    }

    /// <summary>Hex-escapes what would otherwise read as structure in a key, so that "a+b" in a value never equals two values.</summary>
    private static string EscapeForKey(string value)
    {
        var sb = new StringBuilder(value.Length);
        foreach (var c in value)
        {
            if (c is ',' or '+' or '=' or '\\' or '#' or '"' or ';') sb.Append('\\').Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
            else sb.Append(c);
        }
        return sb.ToString();
    }

    private static int SkipSpaces(string s, int i)
    {
        while (i < s.Length && s[i] == ' ') i++;
        return i;
    }

    private static bool IsDescriptor(string type) =>
        char.IsAsciiLetter(type[0]) && type.All(c => char.IsAsciiLetterOrDigit(c) || c == '-');

    private static bool IsNumericOid(string type) =>
        type.Split('.') is { Length: > 1 } arcs && arcs.All(a => a.Length > 0 && a.All(char.IsAsciiDigit));
}
