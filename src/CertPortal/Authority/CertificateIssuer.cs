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

/// <summary>Signs end-entity certificates with the issuing CA. Boulder's habit: the certificate is linted before it is
/// signed. The TBSCertificate is encoded once, linted, and those very bytes are signed, so nothing unlinted is ever
/// signed and no throwaway signature is needed.</summary>
public sealed class CertificateIssuer(CaHierarchy ca, CertPortalOptions options) : IDisposable
{
    // An RSA signature holds a core for milliseconds (RSA-3072 ~2 ms), an ECDSA one for ~25 µs, less than handing it to
    // another thread costs. Made at the first RSA issuance.
    private readonly Lazy<SigningThreads>? _threads = ca.Issuing.RsaPadding is null ? null : new(() => new SigningThreads(Environment.ProcessorCount));

    private readonly byte[] _signatureAlgorithm = ca.Issuing.SignatureGenerator.GetSignatureAlgorithmIdentifier(ca.Issuing.HashAlgorithm);

    // The extensions every certificate of this CA carries alike, encoded once (settings are read once at start): building
    // them per certificate cost more than the rest of the TBSCertificate (X509KeyUsageExtension's constructor alone goes
    // through reflection). Only subjectAltName and subjectKeyIdentifier differ from one certificate to the next.
    private readonly Dictionary<(CertificateProfileName, SubscriberKeyType), X509Extension> _keyUsage =
        Enum.GetValues<CertificateProfileName>().SelectMany(p => Enum.GetValues<SubscriberKeyType>().Select(t => (p, t)))
            .ToDictionary(k => k, k => (X509Extension)new X509KeyUsageExtension(CertificateProfile.For(k.p).KeyUsageFor(k.t), critical: true));
    private readonly X509Extension _extendedKeyUsage = new X509EnhancedKeyUsageExtension([new Oid(Oids.EmailProtection)], critical: false);
    private readonly X509Extension[] _caExtensions =
    [
        X509AuthorityKeyIdentifierExtension.CreateFromSubjectKeyIdentifier(ca.Issuing.SubjectKeyIdentifier),
        CertificateRevocationListBuilder.BuildCrlDistributionPointExtension([ca.Urls.IssuingCrl], false),
        .. options.Crl.DeltasEnabled ? [FreshestCrl.Extension(ca.Urls.IssuingDeltaCrl)] : Array.Empty<X509Extension>(),
        new X509AuthorityInformationAccessExtension([ca.Urls.Ocsp], [ca.Urls.IssuingCert], false),
        CertificatePolicies.Build(options.Issuance.EffectivePolicyOids),
    ];

    /// <summary><see cref="Issue"/>, with an RSA issuing key on threads of its own (<see cref="SigningThreads"/>), not the
    /// caller's thread-pool worker.</summary>
    public Task<SignedCertificate> IssueAsync(CertificateOrder order) =>
        _threads is null ? Task.FromResult(Issue(order)) : _threads.Value.Run(() => Issue(order));

    /// <summary>Whether <see cref="IssueAsync"/> issues on threads of its own.</summary>
    internal bool IssuesOnThreadsOfItsOwn => _threads is not null;

    public void Dispose()
    {
        if (_threads is { IsValueCreated: true }) _threads.Value.Dispose();
    }

    /// <summary>The notAfter a certificate asked to live until <paramref name="asked"/> gets: no later than the issuing CA's own
    /// (RFC 5280 6.1.3 (a)(2) would find it expired in the chain from then on).</summary>
    public DateTimeOffset NotAfterFor(DateTimeOffset asked) => asked > _issuingNotAfter ? _issuingNotAfter : asked;

    private readonly DateTimeOffset _issuingNotAfter = new(ca.Issuing.Certificate.NotAfter.ToUniversalTime());

    /// <summary>Whether the issuing CA has less than a day left at <paramref name="now"/>: what it would issue would end with it
    /// within hours, or (once it has ended) before it begins. There is no rollover to a new issuing CA yet (README, Deployment).</summary>
    public bool HasEndedAt(DateTimeOffset now) => _issuingNotAfter - now < TimeSpan.FromDays(1);

    public DateTimeOffset IssuingNotAfter => _issuingNotAfter;

    public SignedCertificate Issue(CertificateOrder order)
    {
        var notAfter = NotAfterFor(order.NotAfter);
        var request = BuildRequest(order);
        var tbs = CertificateEncoder.Tbs(request, ca.Issuing.Certificate.SubjectName, _signatureAlgorithm, order.NotBefore, notAfter, order.Serial);
        var linted = TbsCertificate.Read(tbs);
        var problems = CertificateLinter.Lint(linted, order, options);
        if (problems.Count > 0)
            throw new CertificateLintException(problems);
        var signature = ca.Issuing.SignatureGenerator.SignData(tbs, ca.Issuing.HashAlgorithm);
        return new SignedCertificate(CertificateEncoder.Certificate(tbs, _signatureAlgorithm, signature), linted.Subject.Name,
            linted.NotBefore, linted.NotAfter);
    }

    /// <summary>Mailbox-validated (S/MIME BR 7.1.4.2.2): CN (the mailbox) and emailAddress only. Sponsor-validated
    /// (DisplayName mode): organizationName, organizationIdentifier, the personal name as
    /// givenName/surname and in CN, and emailAddress. A mailbox longer than X.520 lets a CN be (64 characters; a mailbox may
    /// have 254) is left out of CN: the BR make CN optional, and the mailbox is in emailAddress and the SAN anyway.</summary>
    public X500DistinguishedName SubjectFor(string mailbox, string displayName)
    {
        // The builder encodes in reverse order of the calls: the name reads O, organizationIdentifier, givenName,
        // surname, CN, emailAddress (most significant first).
        var b = new X500DistinguishedNameBuilder();
        b.AddEmailAddress(mailbox);
        if (options.Issuance.SubjectCommonName != SubjectCommonName.DisplayName)
        {
            if (CertificateLinter.FitsCommonName(mailbox)) b.AddCommonName(mailbox);
            return b.Build();
        }
        var (given, surname) = PersonalName.Split(displayName);
        b.AddCommonName(displayName); // at most 64 characters: tokens refuse longer display names in this mode
        if (surname is not null) b.Add(Oids.Surname, surname);
        b.Add(Oids.GivenName, given);
        b.Add(Oids.OrganizationIdentifier, options.Issuance.OrganizationIdentifier!);
        b.AddOrganizationName(options.Issuance.OrganizationName!);
        return b.Build();
    }

    internal CertificateRequest BuildRequest(CertificateOrder order)
    {
        var req = new CertificateRequest(SubjectFor(order.Mailbox, order.DisplayName), order.Key.PublicKey, ca.Issuing.HashAlgorithm, ca.Issuing.RsaPadding);
        // Order: keyUsage, extendedKeyUsage, subjectAltName, subjectKeyIdentifier, then the CA's (AKI, CRL DP, [freshestCRL], AIA, policies).
        req.CertificateExtensions.Add(_keyUsage[(order.Profile, order.Key.Type)]);
        req.CertificateExtensions.Add(_extendedKeyUsage);
        var san = new SubjectAlternativeNameBuilder();
        san.AddEmailAddress(order.Mailbox);
        req.CertificateExtensions.Add(san.Build(critical: false));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(order.Key.PublicKey, X509SubjectKeyIdentifierHashAlgorithm.Sha1, false));
        foreach (var e in _caExtensions) req.CertificateExtensions.Add(e);
        return req;
    }
}

public sealed class CertificateLintException(IReadOnlyList<string> problems)
    : Exception("Certificate failed linting: " + string.Join("; ", problems))
{
    public IReadOnlyList<string> Problems { get; } = problems;
}

/// <summary>The S/MIME BR want a personal name as givenName and/or surname (7.1.4.2.2 (b), (c)); tokens carry one
/// display name. The last word is taken as the surname and the words before it as the given name(s); a name of
/// one word is a given name only. Imperfect for some naming customs, but the CN keeps the name as written.</summary>
public static class PersonalName
{
    public static (string Given, string? Surname) Split(string displayName)
    {
        var name = displayName.Trim();
        var last = name.LastIndexOf(' ');
        return last < 0 ? (name, null) : (name[..last].TrimEnd(), name[(last + 1)..]);
    }
}
