using System.Formats.Asn1;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Authority;

/// <summary>Checks a certificate against our profile (S/MIME BR mailbox-validated, see shared/INTEROP.md)
/// before the real signature. Every rule here is one a relying party or an auditor would check.</summary>
public static class CertificateLinter
{
    public static IReadOnlyList<string> Lint(X509Certificate2 cert, CertificateOrder order, CertPortalOptions options)
    {
        var p = new List<string>();
        var profile = CertificateProfile.For(order.Profile);

        if (cert.Version != 3) p.Add("not X.509 v3");
        var serial = cert.SerialNumberBytes.Span;
        if (serial.Length is < 9 or > 20 || (serial[0] & 0x80) != 0) p.Add("serial must be positive, 9-20 octets");
        if ((cert.NotAfter - cert.NotBefore).TotalDays > 825) p.Add("validity longer than 825 days");

        var exts = cert.Extensions.ToDictionary(e => e.Oid!.Value!, e => e);
        var allowed = new HashSet<string>
        {
            Oids.KeyUsage, Oids.ExtendedKeyUsage, Oids.SubjectAltName, Oids.SubjectKeyIdentifier,
            Oids.AuthorityKeyIdentifier, Oids.CrlDistributionPoints, Oids.AuthorityInfoAccess, Oids.CertificatePolicies,
        };
        foreach (var oid in exts.Keys.Where(o => !allowed.Contains(o))) p.Add($"unexpected extension {oid}");

        if (exts.GetValueOrDefault(Oids.KeyUsage) is not X509KeyUsageExtension ku || !ku.Critical)
            p.Add("keyUsage missing or not critical");
        else
        {
            if (ku.KeyUsages != profile.KeyUsageFor(order.Key.Type)) p.Add($"keyUsage {ku.KeyUsages} does not match the {order.Profile} profile");
            if (order.Key.Type == SubscriberKeyType.Ec && ku.KeyUsages.HasFlag(X509KeyUsageFlags.KeyEncipherment)) p.Add("keyEncipherment on an EC key");
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

        foreach (var rdn in cert.SubjectName.EnumerateRelativeDistinguishedNames())
        {
            var type = rdn.GetSingleElementType().Value;
            var value = rdn.GetSingleElementValue();
            if (type == Oids.EmailAddress && !string.Equals(value, order.Mailbox, StringComparison.OrdinalIgnoreCase))
                p.Add("subject emailAddress differs from the SAN mailbox");
            else if (type == Oids.CommonName && value != order.Mailbox &&
                     !(options.Issuance.SubjectCommonName == SubjectCommonName.DisplayName && value == order.DisplayName))
                p.Add("subject CN is neither the mailbox nor the configured display name");
            else if (type is not (Oids.EmailAddress or Oids.CommonName or Oids.SerialNumberAttribute))
                p.Add($"subject attribute {type} is not allowed for mailbox-validated certificates");
        }

        if (!exts.ContainsKey(Oids.SubjectKeyIdentifier)) p.Add("subjectKeyIdentifier missing");
        if (exts.GetValueOrDefault(Oids.AuthorityKeyIdentifier) is not X509AuthorityKeyIdentifierExtension aki ||
            aki.KeyIdentifier is null || aki.NamedIssuer is not null || aki.SerialNumber is not null)
            p.Add("authorityKeyIdentifier must hold the key identifier only");
        if (exts.GetValueOrDefault(Oids.CrlDistributionPoints) is not { Critical: false }) p.Add("CRL distribution point missing or critical");
        if (exts.GetValueOrDefault(Oids.AuthorityInfoAccess) is not X509AuthorityInformationAccessExtension aia || aia.Critical ||
            !aia.EnumerateCAIssuersUris().Any() || aia.EnumerateCAIssuersUris().Any(u => !u.StartsWith("http://", StringComparison.Ordinal)))
            p.Add("AIA caIssuers missing, critical or not http://");
        if (exts.GetValueOrDefault(Oids.CertificatePolicies) is not { Critical: false } cp ||
            !CertificatePolicies.Read(cp).SequenceEqual(options.Issuance.EffectivePolicyOids))
            p.Add("certificatePolicies missing, critical or not the configured policies");
        return p;
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
