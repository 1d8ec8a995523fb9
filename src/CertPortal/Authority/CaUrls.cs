namespace CertPortal.Authority;

/// <summary>The http URLs written into certificates (CRL DP, AIA caIssuers and OCSP) and served by the CRL endpoints.
/// Paths are fixed so a URL in a certificate keeps working for the certificate's whole life.</summary>
public sealed class CaUrls(string publicBaseUrl)
{
    public const string IssuingCrlPath = "/crl/issuing.crl";
    public const string RootCrlPath = "/crl/root.crl";
    /// <summary>The issuing CA's delta CRL (RFC 5280 §5.2.4), when Crl:DeltaBaseInterval turns delta CRLs on.</summary>
    public const string IssuingDeltaCrlPath = "/crl/issuing-delta.crl";
    public const string IssuingCertPath = "/ca/issuing.crt";
    public const string RootCertPath = "/ca/root.crt";
    public const string ChainPemPath = "/ca/chain.pem";
    /// <summary>The root in PEM, for people to trust (Thunderbird and Linux tools import PEM; Windows, macOS, iOS and Android take root.crt).</summary>
    public const string RootPemPath = "/ca/root.pem";
    /// <summary>One OCSP URL for both CAs: the CertID in each request names the issuer (Ocsp/OcspResponder).</summary>
    public const string OcspPath = "/ocsp";

    public string BaseUrl { get; } = publicBaseUrl.TrimEnd('/');
    public string IssuingCrl => BaseUrl + IssuingCrlPath;
    public string RootCrl => BaseUrl + RootCrlPath;
    public string IssuingDeltaCrl => BaseUrl + IssuingDeltaCrlPath;
    public string IssuingCert => BaseUrl + IssuingCertPath;
    public string RootCert => BaseUrl + RootCertPath;
    public string Ocsp => BaseUrl + OcspPath;
}
