using System.Collections.Frozen;
using System.Formats.Asn1;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Authority;

/// <summary>Checks a certificate against our profile (S/MIME BR mailbox-validated, see shared/INTEROP.md)
/// before the real signature. Every rule here is one a relying party or an auditor would check.</summary>
public static class CertificateLinter
{
    // Every enrollment is linted, so the rule tables are built once and the checks below are plain loops: with per-call sets
    // and LINQ the bookkeeping cost more than the rules (a profile of the issuer: the linter ~30 µs of CPU per certificate).
    private static readonly FrozenSet<string> AllowedExtensions = new[]
    {
        Oids.KeyUsage, Oids.ExtendedKeyUsage, Oids.SubjectAltName, Oids.SubjectKeyIdentifier,
        Oids.AuthorityKeyIdentifier, Oids.CrlDistributionPoints, Oids.AuthorityInfoAccess, Oids.CertificatePolicies,
        Oids.FreshestCrl,
    }.ToFrozenSet(StringComparer.Ordinal);

    private static readonly string[] MailboxSubjectAttributes = [Oids.CommonName, Oids.EmailAddress, Oids.SerialNumberAttribute];
    private static readonly string[] SponsorSubjectAttributes =
        [Oids.CommonName, Oids.EmailAddress, Oids.SerialNumberAttribute, Oids.OrganizationName, Oids.OrganizationIdentifier, Oids.GivenName, Oids.Surname];

    public static IReadOnlyList<string> Lint(X509Certificate2 cert, CertificateOrder order, CertPortalOptions options) =>
        Lint(TbsCertificate.FromCertificate(cert.RawData), order, options);

    /// <summary>Lints the TBSCertificate itself: what the issuer signs next is exactly what was checked.</summary>
    public static IReadOnlyList<string> Lint(TbsCertificate cert, CertificateOrder order, CertPortalOptions options)
    {
        var p = new List<string>();
        var profile = CertificateProfile.For(order.Profile);

        if (cert.Version != 3) p.Add("not X.509 v3");
        var serial = cert.SerialNumber.AsSpan();
        if (serial.Length is < 9 or > 20 || (serial[0] & 0x80) != 0) p.Add("serial must be positive, 9-20 octets");
        if ((cert.NotAfter - cert.NotBefore).TotalDays > 825) p.Add("validity longer than 825 days");
        if (cert.NotAfter <= cert.NotBefore) p.Add("validity ends before it begins");

        var exts = new Dictionary<string, X509Extension>(cert.Extensions.Count, StringComparer.Ordinal);
        foreach (var e in cert.Extensions)
            if (!exts.TryAdd(e.Oid!.Value!, e)) p.Add($"extension {e.Oid.Value} appears twice"); // RFC 5280 §4.2
        foreach (var oid in exts.Keys)
            if (!AllowedExtensions.Contains(oid)) p.Add($"unexpected extension {oid}");

        if (exts.GetValueOrDefault(Oids.KeyUsage) is not { Critical: true } ku)
            p.Add("keyUsage missing or not critical");
        else
        {
            var usages = KeyUsages(ku.RawData);
            if (usages != profile.KeyUsageFor(order.Key.Type)) p.Add($"keyUsage {usages} does not match the {order.Profile} profile");
            if (order.Key.Type == SubscriberKeyType.Ec && usages.HasFlag(X509KeyUsageFlags.KeyEncipherment)) p.Add("keyEncipherment on an EC key");
        }

        if (exts.GetValueOrDefault(Oids.ExtendedKeyUsage) is not X509EnhancedKeyUsageExtension eku || eku.Critical ||
            eku.EnhancedKeyUsages.Count != 1 || eku.EnhancedKeyUsages[0].Value != Oids.EmailProtection)
            p.Add("extendedKeyUsage must be emailProtection only, non-critical");

        if (exts.GetValueOrDefault(Oids.SubjectAltName) is not { } san || san.Critical)
            p.Add("subjectAltName missing or critical");
        else
        {
            var names = SubjectAltNames.ReadRfc822Names(san.RawData, out var others);
            if (others > 0) p.Add("subjectAltName holds names other than rfc822Name");
            if (names.Count != 1 || !string.Equals(names[0], order.Mailbox, StringComparison.OrdinalIgnoreCase))
                p.Add("subjectAltName must hold exactly the token's mailbox");
        }

        LintSubject(cert, order, options, p);

        if (!exts.ContainsKey(Oids.SubjectKeyIdentifier)) p.Add("subjectKeyIdentifier missing");
        if (exts.GetValueOrDefault(Oids.AuthorityKeyIdentifier) is not X509AuthorityKeyIdentifierExtension aki ||
            aki.KeyIdentifier is null || aki.NamedIssuer is not null || aki.SerialNumber is not null)
            p.Add("authorityKeyIdentifier must hold the key identifier only");
        if (exts.GetValueOrDefault(Oids.CrlDistributionPoints) is not { Critical: false }) p.Add("CRL distribution point missing or critical");
        if (exts.GetValueOrDefault(Oids.AuthorityInfoAccess) is not X509AuthorityInformationAccessExtension aia || aia.Critical ||
            !AnyAndAllHttp(aia.EnumerateCAIssuersUris()) || !AnyAndAllHttp(aia.EnumerateOcspUris()))
            p.Add("AIA caIssuers or OCSP missing, critical or not http://");
        if (exts.GetValueOrDefault(Oids.CertificatePolicies) is not { Critical: false } cp ||
            !CertificatePolicies.Read(cp).SequenceEqual(options.Issuance.EffectivePolicyOids))
            p.Add("certificatePolicies missing, critical or not the configured policies");
        return p;
    }

    /// <summary>KeyUsage ::= BIT STRING (RFC 5280 §4.2.1.3) as .NET's flags, whose values are the BIT STRING's bytes (bit 0,
    /// digitalSignature, is 0x80 of the first; decipherOnly, bit 8, 0x80 of the second). Read here rather than through
    /// <see cref="X509KeyUsageExtension.KeyUsages"/>, whose generic named-bit-list reader looks the enum's attributes up by
    /// reflection at every call: about 1 % of an enrollment's CPU samples (session 12), for two bytes.</summary>
    internal static X509KeyUsageFlags KeyUsages(ReadOnlySpan<byte> extensionValue)
    {
        // DER: the unused bits are zero and no trailing zero byte is left (the reader refuses either).
        var bits = AsnDecoder.ReadBitString(extensionValue, AsnEncodingRules.DER, out _, out var consumed);
        if (consumed != extensionValue.Length || bits.Length > 2 || (bits.Length > 0 && bits[^1] == 0))
            throw new AsnContentException("keyUsage is not a DER named bit list of at most nine bits.");
        return (X509KeyUsageFlags)(bits.Length switch { 0 => 0, 1 => bits[0], _ => bits[0] | bits[1] << 8 });
    }

    /// <summary>At least one URI, and every one http:// (S/MIME BR 7.1.2.3 (c), (d)).</summary>
    private static bool AnyAndAllHttp(IEnumerable<string> uris)
    {
        var any = false;
        foreach (var u in uris)
        {
            if (!u.StartsWith("http://", StringComparison.Ordinal)) return false;
            any = true;
        }
        return any;
    }

    /// <summary>S/MIME BR 7.1.4.2.2. Mailbox-validated: CN may hold only the mailbox (pkilint:
    /// cabf.smime.common_name_value_unknown_source when it held a display name under 2.23.140.1.5.1.x).
    /// Sponsor-validated: organizationName required, a personal name as givenName/surname, CN the name.</summary>
    /// <summary>RFC 5280's ub-common-name (X.520): a commonName holds at most 64 characters, which pkilint and the S/MIME BR
    /// keep. Counted in characters (Unicode scalar values), as the bound is.</summary>
    public const int MaxCommonNameLength = 64;

    public static bool FitsCommonName(string value) => value.EnumerateRunes().Count() <= MaxCommonNameLength;

    private static void LintSubject(TbsCertificate cert, CertificateOrder order, CertPortalOptions options, List<string> p)
    {
        var sponsored = options.Issuance.SubjectCommonName == SubjectCommonName.DisplayName;
        var kind = sponsored ? "sponsor" : "mailbox";
        foreach (var policy in options.Issuance.EffectivePolicyOids)
            if (CertificatePolicies.ValidationOf(policy) is { } validation && validation != kind)
                p.Add($"policy {policy} is {validation}-validated, but the subject is {kind}-validated");

        var attributes = new List<(string Type, string? Value)>(sponsored ? SponsorSubjectAttributes.Length : MailboxSubjectAttributes.Length);
        foreach (var rdn in cert.Subject.EnumerateRelativeDistinguishedNames())
        {
            if (rdn.HasMultipleElements) { p.Add("multi-valued subject RDN"); continue; }
            attributes.Add((rdn.GetSingleElementType().Value!, rdn.GetSingleElementValue()));
        }
        var allowed = sponsored ? SponsorSubjectAttributes : MailboxSubjectAttributes;
        foreach (var (type, _) in attributes)
            if (Array.IndexOf(allowed, type) < 0) p.Add($"subject attribute {type} is not allowed for {kind}-validated certificates");
        // Each repeated type once, in the order of its first appearance.
        for (var i = 0; i < attributes.Count; i++)
        {
            var type = attributes[i].Type;
            var seenBefore = false;
            for (var j = 0; j < i && !seenBefore; j++) seenBefore = attributes[j].Type == type;
            if (seenBefore) continue;
            var count = 1;
            for (var j = i + 1; j < attributes.Count; j++) if (attributes[j].Type == type) count++;
            if (count > 1) p.Add($"subject attribute {type} appears {count} times");
        }
        string? Value(string type)
        {
            foreach (var a in attributes) if (a.Type == type) return a.Value;
            return null;
        }

        if (Value(Oids.CommonName) is { } commonName && !FitsCommonName(commonName))
            p.Add($"subject CN longer than {MaxCommonNameLength} characters (X.520 ub-common-name)");
        if (Value(Oids.EmailAddress) is { } email && !string.Equals(email, order.Mailbox, StringComparison.OrdinalIgnoreCase))
            p.Add("subject emailAddress differs from the SAN mailbox");
        if (!sponsored)
        {
            if (Value(Oids.CommonName) is { } cn && !string.Equals(cn, order.Mailbox, StringComparison.OrdinalIgnoreCase))
                p.Add("subject CN of a mailbox-validated certificate must be the mailbox");
            return;
        }
        var (given, surname) = PersonalName.Split(order.DisplayName);
        if (order.DisplayName.Trim().Length == 0) p.Add("sponsor-validated certificate without a personal name");
        if (Value(Oids.CommonName) is { } name && name != order.DisplayName)
            p.Add("subject CN is not the personal name");
        if (Value(Oids.GivenName) != given || Value(Oids.Surname) != surname)
            p.Add("subject givenName/surname do not hold the personal name");
        if (Value(Oids.OrganizationName) != options.Issuance.OrganizationName)
            p.Add("subject organizationName missing or not the configured organisation");
        if (Value(Oids.OrganizationIdentifier) is not { Length: > 0 } orgId || orgId != options.Issuance.OrganizationIdentifier)
            p.Add("subject organizationIdentifier missing or not the configured one");
    }
}

/// <summary>.NET's SAN extension type enumerates DNS names and IP addresses only; rfc822Name is
/// GeneralName [1] IA5String (RFC 5280 §4.2.1.6), read here.</summary>
public static class SubjectAltNames
{
    private static readonly Asn1Tag Rfc822Name = new(TagClass.ContextSpecific, 1);

    public static List<string> ReadRfc822Names(ReadOnlyMemory<byte> extensionValue, out int otherNames)
    {
        var names = new List<string>();
        otherNames = 0;
        var seq = new AsnReader(extensionValue, AsnEncodingRules.DER).ReadSequence();
        while (seq.HasData)
        {
            var tag = seq.PeekTag();
            if (tag.HasSameClassAndValue(Rfc822Name))
                names.Add(seq.ReadCharacterString(UniversalTagNumber.IA5String, Rfc822Name));
            else
            {
                seq.ReadEncodedValue();
                otherNames++;
            }
        }
        return names;
    }
}
