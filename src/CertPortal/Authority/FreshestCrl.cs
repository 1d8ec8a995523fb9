using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Authority;

/// <summary>The freshestCRL extension (RFC 5280 §4.2.1.15): the syntax of cRLDistributionPoints under another OID,
/// non-critical, so .NET's CRL DP encoder writes its value.</summary>
public static class FreshestCrl
{
    public static X509Extension Extension(string deltaCrlUrl) =>
        new(new Oid(Oids.FreshestCrl), CertificateRevocationListBuilder.BuildCrlDistributionPointExtension([deltaCrlUrl], false).RawData, critical: false);
}
