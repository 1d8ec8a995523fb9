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
}
