using System.Formats.Asn1;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Authority;

/// <summary>.NET has no builder for certificatePolicies (RFC 5280 §4.2.1.4), so we encode it:
/// SEQUENCE OF PolicyInformation { policyIdentifier }, without qualifiers.</summary>
public static class CertificatePolicies
{
    public static X509Extension Build(IEnumerable<string> policyOids)
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence())
            foreach (var oid in policyOids)
                using (w.PushSequence())
                    w.WriteObjectIdentifier(oid);
        return new X509Extension(Oids.CertificatePolicies, w.Encode(), critical: false);
    }

    public static IReadOnlyList<string> Read(X509Extension ext)
    {
        var result = new List<string>();
        var seq = new AsnReader(ext.RawData, AsnEncodingRules.DER).ReadSequence();
        while (seq.HasData)
            result.Add(seq.ReadSequence().ReadObjectIdentifier());
        return result;
    }

    /// <summary>S/MIME BR validation type of a policy OID (7.1.6.1: mailbox, organization, sponsor, individual),
    /// or null for a policy outside the S/MIME BR.</summary>
    public static string? ValidationOf(string oid) => Parse(oid)?.Validation;

    /// <summary>True when a policy is an S/MIME BR strict generation (2.23.140.1.5.x.3): no certificateHold (7.2.2).</summary>
    public static bool IsStrict(IEnumerable<string> oids) => oids.Any(o => Parse(o)?.Generation == "strict");

    private static (string Validation, string Generation)? Parse(string oid)
    {
        if (!oid.StartsWith(Oids.SmimeBrPolicyArc, StringComparison.Ordinal)) return null;
        var parts = oid[Oids.SmimeBrPolicyArc.Length..].Split('.');
        if (parts.Length != 2) return null;
        string? validation = parts[0] switch { "1" => "mailbox", "2" => "organization", "3" => "sponsor", "4" => "individual", _ => null };
        string? generation = parts[1] switch { "1" => "legacy", "2" => "multipurpose", "3" => "strict", _ => null };
        return validation is null || generation is null ? null : (validation, generation);
    }
}
