using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Gal;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Gal;

/// <summary>Outlook's "Publish to GAL" writes userSMIMECertificate as one signed value bundling the person's certificates. When
/// one of ours inside such a bundle is revoked it must leave the directory too, with the bundle's other certificates and its
/// signature kept; and a resync must find our certificates where only such a bundle holds them.</summary>
public sealed class PublishedBundleTests(DirectoryApp app) : IClassFixture<DirectoryApp>, IDisposable
{
    private readonly ToolDir _dir = new("bundles");

    public void Dispose() => _dir.Dispose();

    /// <summary>A SignedData as a mail client publishes it: signed by a certificate of another CA (the person's own, here
    /// self-signed), carrying that certificate and <paramref name="alsoCarried"/>.</summary>
    private byte[] ClientBundle(string email, byte[] alsoCarried, out byte[] signerDer)
    {
        var name = Guid.NewGuid().ToString("N")[..8];
        var key = _dir.File(name + ".key");
        var signer = _dir.File(name + ".pem");
        Tool.Run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", signer,
            "-days", "30", "-subj", $"/CN=Outlook {name}", "-addext", $"subjectAltName=email:{email}"]).EnsureSuccess();
        var carried = _dir.Write(name + ".ours.pem", new string(PemEncoding.Write("CERTIFICATE", alsoCarried)));
        var bundle = _dir.File(name + ".p7s");
        Tool.Run("openssl", ["cms", "-sign", "-signer", signer, "-inkey", key, "-certfile", carried, "-in", _dir.Write(name + ".txt", "capabilities"),
            "-nodetach", "-outform", "DER", "-out", bundle]).EnsureSuccess();
        signerDer = X509Certificate2.CreateFromPem(File.ReadAllText(signer)).RawData;
        var value = File.ReadAllBytes(bundle);
        Assert.True(SmimeCertificateBundle.TryReadCertificates(value, out var certs) && certs.Count == 2, "openssl bundled both certificates");
        return value;
    }

    private string Dn(string email) => app.Person(email).Split('\n').First(l => l.StartsWith("dn: ", StringComparison.Ordinal))[4..].Trim();

    private List<byte[]> SmimeValues(string email) => Slapd.BinaryValues(app.Person(email), "userSMIMECertificate");

    private void AssertBundleKeptWithout(string email, byte[] signerDer)
    {
        var value = Assert.Single(SmimeValues(email));
        Assert.True(SmimeCertificateBundle.TryReadCertificates(value, out var certs));
        Assert.Equal(signerDer, Assert.Single(certs));
        // The signature covers the content, not the certificate set: openssl still verifies it (the signer's certificate, which
        // it finds in the value, is self-signed, so the chain is not checked).
        var verified = Tool.Run("openssl", ["cms", "-verify", "-noverify", "-inform", "DER", "-in", _dir.Write(Guid.NewGuid().ToString("N") + ".p7s", value)]);
        Assert.True(verified.ExitCode == 0, verified.Output);
        Assert.Contains("capabilities", verified.Stdout);
    }

    [Fact]
    public async Task A_revoked_certificate_is_taken_out_of_a_mail_clients_signed_bundle_which_keeps_its_other_certificates_and_signature()
    {
        var email = $"bundle.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (cert, _) = await app.IssueAsync(email, "encryption");
        await app.WaitForDirectoryAsync();
        var ours = X509Certificate2.CreateFromPem(cert.CertificatePem).RawData;
        // The person's mail client publishes its bundle over our value.
        var bundle = ClientBundle(email, ours, out var signerDer);
        app.Ldap.Modify($"dn: {Dn(email)}\nchangetype: modify\nreplace: userSMIMECertificate\nuserSMIMECertificate:: {Convert.ToBase64String(bundle)}\n");

        Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(cert.SerialNumber, "keyCompromise")).StatusCode);
        await app.WaitForDirectoryAsync();

        Assert.Empty(app.PublishedCertificates(email));
        AssertBundleKeptWithout(email, signerDer);
    }

    [Fact]
    public async Task Resync_finds_our_certificate_on_an_entry_that_holds_it_only_in_a_bundle()
    {
        // Our certificate, revoked, in a bundle on an entry the database knows nothing about (another mailbox, no userCertificate).
        var (cert, _) = await app.IssueAsync($"bundle.source.{Guid.NewGuid().ToString("N")[..8]}@example.test", "encryption");
        Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(cert.SerialNumber, "superseded")).StatusCode);
        await app.WaitForDirectoryAsync();
        var stray = $"bundle.stray.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var bundle = ClientBundle(stray, X509Certificate2.CreateFromPem(cert.CertificatePem).RawData, out var signerDer);
        app.Ldap.Modify(Slapd.Dedent($"""
            dn: mail={stray},{Slapd.PeopleDn}
            objectClass: inetOrgPerson
            cn: Stray
            sn: Stray
            mail: {stray}
            userSMIMECertificate:: {Convert.ToBase64String(bundle)}
            """), add: true);

        Assert.Equal(HttpStatusCode.Accepted, (await app.Admin.PostAsync("/api/v1/directory/resync", null)).StatusCode);
        await app.WaitForDirectoryAsync();

        AssertBundleKeptWithout(stray, signerDer);
    }
}
