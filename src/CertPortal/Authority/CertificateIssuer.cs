using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Authority;

/// <summary>What the registration side decided a certificate must say. The issuer adds nothing the
/// request did not vouch for: the mailbox comes from the enrollment token, never from the CSR.</summary>
public sealed record CertificateOrder(
    string Mailbox,
    string DisplayName,
    CertificateProfileName Profile,
    SubscriberKey Key,
    byte[] Serial,
    DateTimeOffset NotBefore,
    DateTimeOffset NotAfter);

/// <summary>Signs end-entity certificates with the issuing CA. Boulder's habit: the exact certificate
/// is first signed by a throwaway key and linted; only a certificate that passes is signed for real.</summary>
public sealed class CertificateIssuer(CaHierarchy ca, CertPortalOptions options)
{
    // Any key will do for the lint copy; P-256 is the cheapest to sign with.
    private static readonly ECDsa LintKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private static readonly X509SignatureGenerator LintSigner = X509SignatureGenerator.CreateForECDsa(LintKey);

    public X509Certificate2 Issue(CertificateOrder order)
    {
        var notAfter = order.NotAfter > ca.Issuing.Certificate.NotAfter ? new DateTimeOffset(ca.Issuing.Certificate.NotAfter.ToUniversalTime()) : order.NotAfter;
        var request = BuildRequest(order);

        using (var lintCopy = request.Create(ca.Issuing.Certificate.SubjectName, LintSigner, order.NotBefore, notAfter, order.Serial))
        {
            var problems = CertificateLinter.Lint(lintCopy, order, options);
            if (problems.Count > 0)
                throw new CertificateLintException(problems);
        }
        return request.Create(ca.Issuing.Certificate.SubjectName, ca.Issuing.SignatureGenerator, order.NotBefore, notAfter, order.Serial);
    }

    public X500DistinguishedName SubjectFor(string mailbox, string displayName)
    {
        // S/MIME BR 7.1.4.2.2 mailbox-validated: CN (the mailbox) and emailAddress only.
        // The builder encodes in reverse order of the calls: this yields CN=..., emailAddress=...
        var b = new X500DistinguishedNameBuilder();
        b.AddEmailAddress(mailbox);
        b.AddCommonName(options.Issuance.SubjectCommonName == SubjectCommonName.DisplayName && displayName.Length > 0 ? displayName : mailbox);
        return b.Build();
    }

    private CertificateRequest BuildRequest(CertificateOrder order)
    {
        var profile = CertificateProfile.For(order.Profile);
        var req = new CertificateRequest(SubjectFor(order.Mailbox, order.DisplayName), order.Key.PublicKey, ca.Issuing.HashAlgorithm, ca.Issuing.RsaPadding);
        req.CertificateExtensions.Add(new X509KeyUsageExtension(profile.KeyUsageFor(order.Key.Type), critical: true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(Oids.EmailProtection)], critical: false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddEmailAddress(order.Mailbox);
        req.CertificateExtensions.Add(san.Build(critical: false));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(order.Key.PublicKey, X509SubjectKeyIdentifierHashAlgorithm.Sha1, false));
        req.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromSubjectKeyIdentifier(ca.Issuing.SubjectKeyIdentifier));
        req.CertificateExtensions.Add(CertificateRevocationListBuilder.BuildCrlDistributionPointExtension([ca.Urls.IssuingCrl], false));
        req.CertificateExtensions.Add(new X509AuthorityInformationAccessExtension(null, [ca.Urls.IssuingCert], false));
        req.CertificateExtensions.Add(CertificatePolicies.Build(options.Issuance.EffectivePolicyOids));
        return req;
    }
}

public sealed class CertificateLintException(IReadOnlyList<string> problems)
    : Exception("Certificate failed linting: " + string.Join("; ", problems))
{
    public IReadOnlyList<string> Problems { get; } = problems;
}
