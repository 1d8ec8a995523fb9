namespace CertPortal.Authority;

/// <summary>The one place that names object identifiers; features refer to these, never to literals.</summary>
public static class Oids
{
    // Algorithms (RFC 3279, RFC 5480)
    public const string RsaEncryption = "1.2.840.113549.1.1.1";
    public const string EcPublicKey = "1.2.840.10045.2.1";
    public const string CurveP256 = "1.2.840.10045.3.1.7";
    public const string CurveP384 = "1.3.132.0.34";

    // Signature algorithms a CSR may be signed with (RFC 4055, RFC 5758), and weak ones named in refusals.
    public const string Sha256WithRsa = "1.2.840.113549.1.1.11";
    public const string Sha384WithRsa = "1.2.840.113549.1.1.12";
    public const string Sha512WithRsa = "1.2.840.113549.1.1.13";
    public const string RsaPss = "1.2.840.113549.1.1.10";
    public const string EcdsaWithSha256 = "1.2.840.10045.4.3.2";
    public const string EcdsaWithSha384 = "1.2.840.10045.4.3.3";
    public const string EcdsaWithSha512 = "1.2.840.10045.4.3.4";
    public const string Md2WithRsa = "1.2.840.113549.1.1.2";
    public const string Md5WithRsa = "1.2.840.113549.1.1.4";
    public const string Sha1WithRsa = "1.2.840.113549.1.1.5";
    public const string EcdsaWithSha1 = "1.2.840.10045.4.1";

    // Extensions (RFC 5280 §4.2)
    public const string SubjectKeyIdentifier = "2.5.29.14";
    public const string KeyUsage = "2.5.29.15";
    public const string SubjectAltName = "2.5.29.17";
    public const string BasicConstraints = "2.5.29.19";
    public const string CrlDistributionPoints = "2.5.29.31";
    /// <summary>freshestCRL (RFC 5280 §4.2.1.15, §5.2.6): where the delta CRL is, in certificates and complete CRLs.</summary>
    public const string FreshestCrl = "2.5.29.46";
    /// <summary>deltaCRLIndicator (RFC 5280 §5.2.4): marks a delta CRL and names its base CRL's number.</summary>
    public const string DeltaCrlIndicator = "2.5.29.27";
    public const string CertificatePolicies = "2.5.29.32";
    public const string AuthorityKeyIdentifier = "2.5.29.35";
    public const string ExtendedKeyUsage = "2.5.29.37";
    public const string AuthorityInfoAccess = "1.3.6.1.5.5.7.1.1";

    public const string EmailProtection = "1.3.6.1.5.5.7.3.4";
    public const string AccessMethodCaIssuers = "1.3.6.1.5.5.7.48.2";

    // OCSP (RFC 6960): the AIA access method, the responder's EKU and no-check extension, the basic response
    // type and the nonce; and the hash algorithms a CertID may name (SHA-1 is what RFC 5019 clients send).
    public const string AccessMethodOcsp = "1.3.6.1.5.5.7.48.1";
    public const string OcspSigning = "1.3.6.1.5.5.7.3.9";
    public const string OcspNoCheck = "1.3.6.1.5.5.7.48.1.5";
    public const string OcspBasicResponse = "1.3.6.1.5.5.7.48.1.1";
    public const string OcspNonce = "1.3.6.1.5.5.7.48.1.2";
    public const string OcspArchiveCutoff = "1.3.6.1.5.5.7.48.1.6";
    public const string Sha1 = "1.3.14.3.2.26";
    public const string Sha256 = "2.16.840.1.101.3.4.2.1";
    public const string Sha384 = "2.16.840.1.101.3.4.2.2";
    public const string Sha512 = "2.16.840.1.101.3.4.2.3";

    /// <summary>CA/Browser Forum S/MIME BR, mailbox-validated, strict (2.23.140.1.5.1.3).</summary>
    public const string PolicyMailboxValidatedStrict = "2.23.140.1.5.1.3";
    public const string PolicyMailboxValidatedMultipurpose = "2.23.140.1.5.1.2";
    /// <summary>Sponsor-validated (S/MIME BR 7.1.6.1): an organisation vouches for the person named.</summary>
    public const string PolicySponsorValidatedStrict = "2.23.140.1.5.3.3";
    public const string PolicySponsorValidatedMultipurpose = "2.23.140.1.5.3.2";
    /// <summary>The arc of the S/MIME BR policies: 2.23.140.1.5.{validation}.{generation}.</summary>
    public const string SmimeBrPolicyArc = "2.23.140.1.5.";

    // Attribute types (X.520, PKCS#9)
    public const string CommonName = "2.5.4.3";
    public const string SerialNumberAttribute = "2.5.4.5";
    public const string EmailAddress = "1.2.840.113549.1.9.1";
    public const string OrganizationName = "2.5.4.10";
    public const string OrganizationIdentifier = "2.5.4.97";
    public const string GivenName = "2.5.4.42";
    public const string Surname = "2.5.4.4";
    public const string Pseudonym = "2.5.4.65";
    public const string CountryName = "2.5.4.6";
    public const string LocalityName = "2.5.4.7";
    public const string StateOrProvinceName = "2.5.4.8";
    public const string StreetAddress = "2.5.4.9";
    public const string OrganizationalUnitName = "2.5.4.11";
    public const string Title = "2.5.4.12";

    // LDAP naming attributes from the COSINE schema (RFC 4519): uid, mail, dc.
    public const string UserId = "0.9.2342.19200300.100.1.1";
    public const string Mail = "0.9.2342.19200300.100.1.3";
    public const string DomainComponent = "0.9.2342.19200300.100.1.25";

    // CMS (RFC 5652): a renewal request is SignedData over id-data holding the new CSR.
    public const string CmsData = "1.2.840.113549.1.7.1";
    public const string SigningTime = "1.2.840.113549.1.9.5";
}
