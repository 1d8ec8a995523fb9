using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Org.BouncyCastle.Asn1;
using Org.BouncyCastle.Asn1.X509;

namespace CertPortal.Tests.Infrastructure;

/// <summary>What a relying party assembles for one certificate, the way mail software does it: the
/// chain by following AIA caIssuers, the CRLs from each certificate's own CRL distribution point, and
/// the root as a trust anchor. Everything is fetched over HTTP from the URLs in the certificates, so a
/// wrong URL in a certificate fails the test. Files are written as PEM for the command-line tools.</summary>
public sealed class RelyingParty : IDisposable
{
    private readonly ToolDir _dir = new("relying-party");

    public required string LeafPem { get; init; }
    public required X509Certificate2 Issuing { get; init; }
    public required X509Certificate2 Root { get; init; }
    public required byte[] IssuingCrlDer { get; init; }
    public required byte[] RootCrlDer { get; init; }

    public string Dir => _dir.Path;
    public string LeafFile => _dir.Write("leaf.pem", LeafPem);
    public string RootFile => _dir.Write("root.pem", Root.ExportCertificatePem() + "\n");
    public string IssuingFile => _dir.Write("issuing.pem", Issuing.ExportCertificatePem() + "\n");
    public string CrlFile => _dir.Write("crls.pem", CrlPem(IssuingCrlDer) + CrlPem(RootCrlDer));
    public string IssuingCrlDerFile => _dir.Write("issuing.crl", IssuingCrlDer);
    /// <summary>`openssl cms -verify` has no -CRLfile: the CRLs go into the -CAfile bundle.</summary>
    public string TrustBundleWithCrls => _dir.Write("bundle.pem", Root.ExportCertificatePem() + "\n" + CrlPem(IssuingCrlDer) + CrlPem(RootCrlDer));
    public string File(string name) => _dir.File(name);
    public string Write(string name, string text) => _dir.Write(name, text);
    public string Write(string name, byte[] bytes) => _dir.Write(name, bytes);

    public static async Task<RelyingParty> FetchAsync(string leafPem)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        using var leaf = X509Certificate2.CreateFromPem(leafPem);
        var issuing = X509CertificateLoader.LoadCertificate(await http.GetByteArrayAsync(CaIssuersUrl(leaf)));
        var root = X509CertificateLoader.LoadCertificate(await http.GetByteArrayAsync(CaIssuersUrl(issuing)));
        Assert.Equal(root.SubjectName.RawData, root.IssuerName.RawData);
        return new RelyingParty
        {
            LeafPem = leafPem,
            Issuing = issuing,
            Root = root,
            IssuingCrlDer = await FetchCrlAsync(http, CrlUrl(leaf)),
            RootCrlDer = await FetchCrlAsync(http, CrlUrl(issuing)),
        };
    }

    private static async Task<byte[]> FetchCrlAsync(HttpClient http, string url)
    {
        using var r = await http.GetAsync(url);
        r.EnsureSuccessStatusCode();
        Assert.Equal("application/pkix-crl", r.Content.Headers.ContentType?.MediaType);
        return await r.Content.ReadAsByteArrayAsync();
    }

    public static string CaIssuersUrl(X509Certificate2 cert)
    {
        var aia = cert.Extensions.OfType<X509AuthorityInformationAccessExtension>().Single();
        return aia.EnumerateCAIssuersUris().Single(u => u.StartsWith("http://", StringComparison.Ordinal));
    }

    /// <summary>.NET has no CRL distribution point parser; BouncyCastle does.</summary>
    public static string CrlUrl(X509Certificate2 cert)
    {
        var ext = cert.Extensions[X509Extensions.CrlDistributionPoints.Id] ?? throw new InvalidOperationException("no CRL distribution point");
        var cdp = CrlDistPoint.GetInstance(Asn1Object.FromByteArray(ext.RawData));
        return cdp.GetDistributionPoints()
            .SelectMany(dp => GeneralNames.GetInstance(dp.DistributionPointName.Name).GetNames())
            .Where(n => n.TagNo == GeneralName.UniformResourceIdentifier)
            .Select(n => n.Name.ToString()!)
            .Single();
    }

    public static string CrlPem(byte[] der) => new string(PemEncoding.Write("X509 CRL", der)) + "\n";

    public void Dispose()
    {
        Issuing.Dispose();
        Root.Dispose();
        _dir.Dispose();
    }
}
