using System.Security.Cryptography.X509Certificates;
using Org.BouncyCastle.Asn1;
using Org.BouncyCastle.Asn1.Ocsp;
using Org.BouncyCastle.Asn1.X509;
using Org.BouncyCastle.Math;
using Org.BouncyCastle.Ocsp;
using BcCertificate = Org.BouncyCastle.X509.X509Certificate;

namespace CertPortal.Tests.Ocsp;

/// <summary>A relying party's side of OCSP, built with BouncyCastle (an independent implementation of the ASN.1):
/// requests by issuer and serial, with or without nonce, and the parsed answers.</summary>
public static class OcspProbe
{
    public const string ResponseType = "application/ocsp-response";

    public static byte[] Request(X509Certificate2 issuer, string serialHex, byte[]? nonce = null, string hash = "1.3.14.3.2.26")
    {
        var id = new CertificateID(new AlgorithmIdentifier(new DerObjectIdentifier(hash), DerNull.Instance),
            new BcCertificate(issuer.RawData), new BigInteger(serialHex, 16));
        var generator = new OcspReqGenerator();
        generator.AddRequest(id);
        if (nonce is not null)
        {
            var extensions = new X509ExtensionsGenerator();
            extensions.AddExtension(OcspObjectIdentifiers.PkixOcspNonce, false, new DerOctetString(nonce));
            generator.SetRequestExtensions(extensions.Generate());
        }
        return generator.Generate().GetEncoded();
    }

    public static async Task<byte[]> PostAsync(HttpClient client, byte[] request)
    {
        using var content = new ByteArrayContent(request);
        content.Headers.ContentType = new("application/ocsp-request");
        using var r = await client.PostAsync("/ocsp", content);
        Assert.Equal(System.Net.HttpStatusCode.OK, r.StatusCode);
        Assert.Equal(ResponseType, r.Content.Headers.ContentType?.MediaType);
        return await r.Content.ReadAsByteArrayAsync();
    }

    /// <summary>RFC 5019 5: base64, then URL-encoded, after the responder URL.</summary>
    public static string GetPath(byte[] request) => "/ocsp/" + Uri.EscapeDataString(Convert.ToBase64String(request));

    /// <summary>The single answer of a successful, correctly signed response (checked against the certificate it carries).</summary>
    public static (SingleResp Answer, BasicOcspResp Basic) Read(byte[] der)
    {
        var response = new OcspResp(der);
        Assert.Equal(OcspRespStatus.Successful, response.Status);
        var basic = (BasicOcspResp)response.GetResponseObject();
        var signer = Assert.Single(basic.GetCerts());
        Assert.True(basic.Verify(signer.GetPublicKey()), "the response's signature does not verify with the responder certificate");
        return (Assert.Single(basic.Responses), basic);
    }

    public static string Describe(SingleResp answer) => answer.GetCertStatus() switch
    {
        null => "good",
        RevokedStatus r => "revoked" + (r.HasRevocationReason ? ":" + r.RevocationReason : ""),
        UnknownStatus => "unknown",
        var other => other.GetType().Name,
    };
}
