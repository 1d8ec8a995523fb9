using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;
using CertPortal.Tests.Infrastructure;
using Org.BouncyCastle.Asn1.Ocsp;
using Org.BouncyCastle.Ocsp;

namespace CertPortal.Tests.Ocsp;

/// <summary>A CA whose certificates may be held (multipurpose policy: strict certificates refuse holds, S/MIME BR 7.2.2).</summary>
public sealed class OcspApp : CertPortalApp
{
    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Issuance:PolicyOids:0"] = Oids.PolicyMailboxValidatedMultipurpose,
    };
}

/// <summary>The OCSP responder as relying parties see it: OpenSSL's <c>openssl ocsp</c> following the URL in the
/// certificate's AIA, NSS's vfychain with OCSP as its only revocation source, gpgsm/dirmngr with OCSP enabled, and
/// BouncyCastle for what the tools do not show (HTTP caching headers, SHA-256 CertIDs, malformed input).</summary>
public sealed class OcspResponderTests(OcspApp app) : IClassFixture<OcspApp>
{
    [Fact]
    public async Task Openssl_says_good_then_revoked_with_the_reason_after_hold_release_and_revocation()
    {
        Tool.Require("openssl", "openssl");
        var (issued, _) = await app.IssueAsync($"ocsp.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing", "EC-P256");
        using var rp = await RelyingParty.FetchAsync(issued.CertificatePem);
        using var leaf = X509Certificate2.CreateFromPem(issued.CertificatePem);
        var aia = leaf.Extensions.OfType<X509AuthorityInformationAccessExtension>().Single();
        var url = Assert.Single(aia.EnumerateOcspUris());
        Assert.Equal(app.BaseUrl + "/ocsp", url);

        Tool.Result Ask(params string[] extra) => Tool.Run("openssl",
            ["ocsp", "-issuer", rp.IssuingFile, "-cert", rp.LeafFile, "-url", url, "-CAfile", rp.RootFile, .. extra]);

        var good = Ask("-no_nonce");
        Assert.True(good.ExitCode == 0 && good.Output.Contains("Response verify OK") && good.Stdout.Contains(": good"), good.Output);

        await Http.EnsureStatus(await app.RevokeAsync(issued.SerialNumber, "certificateHold"), HttpStatusCode.OK);
        var held = Ask("-no_nonce");
        Assert.True(held.Output.Contains("Response verify OK") && held.Stdout.Contains(": revoked") && held.Stdout.Contains("Reason: certificateHold"), held.Output);

        await Http.EnsureStatus(await app.Admin.PostAsync($"/api/v1/certificates/{issued.SerialNumber}/release", null), HttpStatusCode.OK);
        var released = Ask("-no_nonce");
        Assert.True(released.Stdout.Contains(": good"), released.Output);

        await Http.EnsureStatus(await app.RevokeAsync(issued.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
        var revoked = Ask("-no_nonce");
        Assert.True(revoked.Output.Contains("Response verify OK") && revoked.Stdout.Contains(": revoked") &&
                    revoked.Stdout.Contains("Reason: keyCompromise") && revoked.Stdout.Contains("Revocation Time:"), revoked.Output);

        // openssl's default: a nonce, which must come back (otherwise it warns "no nonce in response").
        var withNonce = Ask("-resp_text");
        Assert.True(withNonce.Output.Contains("Response verify OK") && withNonce.Stdout.Contains("OCSP Nonce") &&
                    !withNonce.Output.Contains("WARNING"), withNonce.Output);
    }

    [Fact]
    public async Task Root_responder_answers_for_the_issuing_ca_unknown_for_other_serials_and_unauthorized_for_other_issuers()
    {
        Tool.Require("openssl", "openssl");
        var (issued, _) = await app.IssueAsync($"root.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing");
        using var rp = await RelyingParty.FetchAsync(issued.CertificatePem);
        var url = app.BaseUrl + "/ocsp";
        // The issuing CA certificate names the responder too (its AIA), so chain-checking clients find it.
        Assert.Equal([url], rp.Issuing.Extensions.OfType<X509AuthorityInformationAccessExtension>().Single().EnumerateOcspUris());

        var issuing = Tool.Run("openssl", ["ocsp", "-issuer", rp.RootFile, "-cert", rp.IssuingFile, "-url", url, "-CAfile", rp.RootFile]);
        Assert.True(issuing.Output.Contains("Response verify OK") && issuing.Stdout.Contains(": good"), issuing.Output);

        var unknown = Tool.Run("openssl", ["ocsp", "-issuer", rp.IssuingFile, "-serial", "0x0123456789ABCDEF", "-url", url, "-CAfile", rp.RootFile]);
        Assert.True(unknown.Output.Contains("Response verify OK") && unknown.Stdout.Contains("0x0123456789ABCDEF: unknown"), unknown.Output);

        // Several certificates in one request (with openssl's nonce): one freshly signed response answers each.
        var both = Tool.Run("openssl", ["ocsp", "-issuer", rp.IssuingFile, "-cert", rp.LeafFile, "-serial", "0x0123456789ABCDEF", "-url", url, "-CAfile", rp.RootFile]);
        Assert.True(both.Output.Contains("Response verify OK") && both.Stdout.Contains("leaf.pem: good") &&
                    both.Stdout.Contains("0x0123456789ABCDEF: unknown") && !both.Output.Contains("WARNING"), both.Output);

        // A CA this responder does not serve: the leaf itself posing as an issuer.
        var foreign = Tool.Run("openssl", ["ocsp", "-issuer", rp.LeafFile, "-serial", "0x01", "-url", url, "-CAfile", rp.RootFile]);
        Assert.Contains("unauthorized (6)", foreign.Output);
    }

    [Fact]
    public async Task Unknown_answers_are_signed_per_request_and_never_kept()
    {
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        var responder = app.Service<CertPortal.Ocsp.OcspResponder>();
        var before = responder.Count;
        for (var i = 0; i < 20; i++)
        {
            var serial = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));
            var (answer, _) = OcspProbe.Read(await app.Client.GetByteArrayAsync(OcspProbe.GetPath(OcspProbe.Request(issuing, serial))));
            Assert.Equal("unknown", OcspProbe.Describe(answer));
        }
        Assert.Equal(before, responder.Count);

        // An issued certificate's response is kept, from its second request on (the doorkeeper).
        var (issued, _) = await app.IssueAsync($"kept.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing");
        for (var i = 0; i < 2; i++) OcspProbe.Read(await app.Client.GetByteArrayAsync(OcspProbe.GetPath(OcspProbe.Request(issuing, issued.SerialNumber))));
        Assert.Equal(before + 1, responder.Count);
    }

    [Fact]
    public async Task Get_answers_carry_rfc5019_caching_headers_and_show_a_revocation_at_once()
    {
        var (issued, _) = await app.IssueAsync($"get.{Guid.NewGuid().ToString("N")[..8]}@example.test", "encryption");
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        var path = OcspProbe.GetPath(OcspProbe.Request(issuing, issued.SerialNumber));
        // A response is kept from a certificate's second request on: this first one is signed and not kept.
        Assert.Equal(HttpStatusCode.OK, (await app.Client.GetAsync(path)).StatusCode);

        using var first = await app.Client.GetAsync(path);
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal(OcspProbe.ResponseType, first.Content.Headers.ContentType?.MediaType);
        var body = await first.Content.ReadAsByteArrayAsync();
        var (answer, _) = OcspProbe.Read(body);
        Assert.Equal("good", OcspProbe.Describe(answer));
        Assert.Equal(issued.SerialNumber, answer.GetCertID().SerialNumber.ToString(16).ToUpperInvariant().PadLeft(32, '0'));
        Assert.NotNull(answer.NextUpdate);
        Assert.InRange((answer.NextUpdate!.Value - answer.ThisUpdate).TotalDays, 3.99, 4.01);
        var cacheControl = first.Headers.CacheControl!;
        Assert.True(cacheControl.Public && cacheControl.NoTransform && cacheControl.MustRevalidate, cacheControl.ToString());
        Assert.InRange(cacheControl.MaxAge!.Value.TotalSeconds, 1, 60);
        Assert.NotNull(first.Content.Headers.LastModified);
        Assert.NotNull(first.Content.Headers.Expires);
        var etag = first.Headers.ETag!;

        // From the cache: the same signed bytes, and 304 to a conditional request.
        Assert.Equal(body, await app.Client.GetByteArrayAsync(path));
        using (var conditional = new HttpRequestMessage(HttpMethod.Get, path))
        {
            conditional.Headers.IfNoneMatch.Add(etag);
            using var notModified = await app.Client.SendAsync(conditional);
            Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);
        }
        // SHA-256 CertIDs are answered too, with the CertID as asked.
        var sha256 = OcspProbe.Read(await OcspProbe.PostAsync(app.Client, OcspProbe.Request(issuing, issued.SerialNumber, hash: "2.16.840.1.101.3.4.2.1")));
        Assert.Equal("good", OcspProbe.Describe(sha256.Answer));
        Assert.Equal("2.16.840.1.101.3.4.2.1", sha256.Answer.GetCertID().HashAlgOid);

        // The change drops the cached answer and signs it again in the background: the cache refills without a request.
        var responder = app.Service<CertPortal.Ocsp.OcspResponder>();
        var cachedBefore = responder.Count;
        await Http.EnsureStatus(await app.RevokeAsync(issued.SerialNumber, "superseded"), HttpStatusCode.OK);
        for (var i = 0; i < 100 && responder.Count < cachedBefore; i++) await Task.Delay(50);
        Assert.Equal(cachedBefore, responder.Count);
        var after = OcspProbe.Read(await app.Client.GetByteArrayAsync(path));
        Assert.Equal($"revoked:{Org.BouncyCastle.Asn1.X509.CrlReason.Superseded}", OcspProbe.Describe(after.Answer));
    }

    [Fact]
    public async Task A_nonce_is_echoed_in_a_freshly_signed_response()
    {
        var (issued, _) = await app.IssueAsync($"nonce.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing");
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        foreach (var length in new[] { 16, 32 })
        {
            var nonce = RandomNumberGenerator.GetBytes(length);
            using var response = await app.Client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/ocsp")
            {
                Content = new ByteArrayContent(OcspProbe.Request(issuing, issued.SerialNumber, nonce)),
            });
            Assert.True(response.Headers.CacheControl?.NoStore, "a response with a nonce must not be cached");
            var (answer, basic) = OcspProbe.Read(await response.Content.ReadAsByteArrayAsync());
            Assert.Equal("good", OcspProbe.Describe(answer));
            var echoed = basic.GetExtensionValue(OcspObjectIdentifiers.PkixOcspNonce);
            Assert.NotNull(echoed);
            Assert.Equal(nonce, Org.BouncyCastle.Asn1.Asn1OctetString.GetInstance(echoed.GetOctets()).GetOctets());
        }
    }

    [Fact]
    public async Task A_nonce_of_no_octets_or_more_than_128_is_a_malformed_request()
    {
        var (issued, _) = await app.IssueAsync($"nonce.len.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing");
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        // RFC 9654 2.1 (RFC 8954 said the same with 32): a nonce of 0 octets or more than 128 is refused with malformedRequest.
        foreach (var length in new[] { 0, 129, 1000 })
        {
            var request = OcspProbe.Request(issuing, issued.SerialNumber, new byte[length]);
            Assert.Equal(OcspRespStatus.MalformedRequest, new OcspResp(await OcspProbe.PostAsync(app.Client, request)).Status);
            Assert.Equal(OcspRespStatus.MalformedRequest, new OcspResp(await app.Client.GetByteArrayAsync(OcspProbe.GetPath(request))).Status);
        }
        // 33 to 128 octets (RFC 9654's longer nonces): answered, without a nonce, as RFC 8954 responders did not echo them.
        var (answer, basic) = OcspProbe.Read(await OcspProbe.PostAsync(app.Client, OcspProbe.Request(issuing, issued.SerialNumber, new byte[128])));
        Assert.Equal("good", OcspProbe.Describe(answer));
        Assert.Null(basic.GetExtensionValue(OcspObjectIdentifiers.PkixOcspNonce));
    }

    [Fact]
    public async Task Malformed_requests_get_malformedRequest_and_never_a_5xx()
    {
        var malformed = new byte[] { 0x30, 0x03, 0x0A, 0x01, 0x01 };
        var (issued, _) = await app.IssueAsync($"bad.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing");
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        var valid = OcspProbe.Request(issuing, issued.SerialNumber, RandomNumberGenerator.GetBytes(16));

        List<byte[]> bodies = [[], "garbage"u8.ToArray(), new byte[100_000], [0x30, 0x80, 0x00, 0x00], RandomNumberGenerator.GetBytes(300)];
        for (var cut = 1; cut < valid.Length; cut += 3) bodies.Add(valid[..cut]);
        for (var i = 0; i < valid.Length; i += 2)
        {
            var flipped = (byte[])valid.Clone();
            flipped[i] ^= 0xFF;
            bodies.Add(flipped);
        }
        bodies.Add([.. valid, 0x00]); // trailing byte: not DER

        var answers = new Dictionary<int, int>();
        foreach (var body in bodies)
        {
            using var content = new ByteArrayContent(body);
            using var r = await app.Client.PostAsync("/ocsp", content);
            var der = await r.Content.ReadAsByteArrayAsync();
            Assert.True(r.StatusCode == HttpStatusCode.OK && r.Content.Headers.ContentType?.MediaType == OcspProbe.ResponseType,
                $"{(int)r.StatusCode} {r.Content.Headers.ContentType} for {Convert.ToHexString(body.AsSpan(0, Math.Min(body.Length, 40)))}");
            var status = new OcspResp(der).Status;
            Assert.True(status is OcspRespStatus.Successful or OcspRespStatus.MalformedRequest or OcspRespStatus.Unauthorized, $"status {status}");
            answers[status] = answers.GetValueOrDefault(status) + 1;
        }
        Assert.True(answers.GetValueOrDefault(OcspRespStatus.MalformedRequest) > bodies.Count / 2, string.Join(", ", answers));

        foreach (var path in new[] { "/ocsp/", "/ocsp/%%%", "/ocsp/not-base64!", "/ocsp/" + Convert.ToBase64String("hello"u8), "/ocsp/" + new string('A', 6_000) })
        {
            using var r = await app.Client.GetAsync(path);
            Assert.True(r.StatusCode == HttpStatusCode.OK, $"{(int)r.StatusCode} for GET {path[..Math.Min(path.Length, 40)]}");
            Assert.Equal(malformed, await r.Content.ReadAsByteArrayAsync());
        }
    }

    [Fact]
    public async Task A_post_is_read_as_der_whatever_its_content_type_says()
    {
        var (issued, _) = await app.IssueAsync($"label.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing");
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        var request = OcspProbe.Request(issuing, issued.SerialNumber);
        // curl --data-binary labels a body application/x-www-form-urlencoded unless told otherwise.
        foreach (var label in new[] { "application/ocsp-request", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain" })
        {
            using var content = new ByteArrayContent(request);
            content.Headers.ContentType = System.Net.Http.Headers.MediaTypeHeaderValue.Parse(label);
            using var r = await app.Client.PostAsync("/ocsp", content);
            var der = await r.Content.ReadAsByteArrayAsync();
            Assert.True(r.StatusCode == HttpStatusCode.OK && r.Content.Headers.ContentType?.MediaType == OcspProbe.ResponseType,
                $"{(int)r.StatusCode} {r.Content.Headers.ContentType} for a body labelled {label}");
            Assert.True(new OcspResp(der).Status == OcspRespStatus.Successful, $"status {new OcspResp(der).Status} for a body labelled {label}");
            Assert.Equal("good", OcspProbe.Describe(OcspProbe.Read(der).Answer));
        }
    }

    [Fact]
    public async Task The_responder_certificates_are_delegated_short_lived_and_need_no_revocation_check()
    {
        var (issued, _) = await app.IssueAsync($"signer.{Guid.NewGuid().ToString("N")[..8]}@example.test", "signing");
        using var issuing = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        using var root = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/root.crt"));
        var (_, leafBasic) = OcspProbe.Read(await OcspProbe.PostAsync(app.Client, OcspProbe.Request(issuing, issued.SerialNumber)));
        var (_, caBasic) = OcspProbe.Read(await OcspProbe.PostAsync(app.Client, OcspProbe.Request(root, issuing.SerialNumber)));

        foreach (var (basic, ca) in new[] { (leafBasic, issuing), (caBasic, root) })
        {
            using var signer = X509CertificateLoader.LoadCertificate(Assert.Single(basic.GetCerts()).GetEncoded());
            Assert.Equal(ca.SubjectName.RawData, signer.IssuerName.RawData);
            using (var chain = new X509Chain())
            {
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.Add(root);
                chain.ChainPolicy.ExtraStore.Add(issuing);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                Assert.True(chain.Build(signer), string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation)));
            }
            Assert.Equal(Oids.OcspSigning, Assert.Single(signer.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single().EnhancedKeyUsages.Cast<Oid>()).Value);
            var keyUsage = signer.Extensions.OfType<X509KeyUsageExtension>().Single();
            Assert.True(keyUsage.Critical);
            Assert.Equal(X509KeyUsageFlags.DigitalSignature, keyUsage.KeyUsages);
            Assert.NotNull(signer.Extensions[Oids.OcspNoCheck]);
            Assert.Null(signer.Extensions[Oids.CrlDistributionPoints]);
            Assert.Null(signer.Extensions[Oids.AuthorityInfoAccess]);
            Assert.InRange((signer.NotAfter - signer.NotBefore).TotalDays, 29.9, 30.1);
        }
    }

    [Fact]
    public async Task Nss_follows_ocsp_good_then_revoked()
    {
        Tool.Require("vfychain", "libnss3-tools");
        var email = $"nss.ocsp.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (issued, _) = await app.IssueAsync(email, "signing", "RSA-2048");
        using var rp = await RelyingParty.FetchAsync(issued.CertificatePem);
        var db = "sql:" + rp.Dir;
        Tool.Run("certutil", ["-N", "-d", db, "--empty-password"]).EnsureSuccess();
        Tool.Run("certutil", ["-A", "-d", db, "-n", "CertPortal Root", "-t", "CT,C,C", "-a", "-i", rp.RootFile]).EnsureSuccess();
        Tool.Run("certutil", ["-A", "-d", db, "-n", "CertPortal Issuing", "-t", ",,", "-a", "-i", rp.IssuingFile]).EnsureSuccess();
        var leafDer = rp.Write("leaf.der", X509Certificate2.CreateFromPem(issued.CertificatePem).RawData);
        // The PKIX verifier (-pp) with OCSP as the only revocation method, fresh information required for the leaf:
        // NSS fetches from the AIA OCSP URL itself.
        Tool.Result Verify() => Tool.Run("vfychain", ["-d", db, "-pp", "-u", "4", "-g", "leaf", "-h", "requireFreshInfo", "-m", "ocsp", "-s", "requireInfo", leafDer]);

        var good = Verify();
        Assert.True(good.ExitCode == 0 && good.Output.Contains("Chain is good"), good.Output);
        await Http.EnsureStatus(await app.RevokeAsync(issued.SerialNumber, "affiliationChanged"), HttpStatusCode.OK);
        var revoked = Verify();
        Assert.True(revoked.ExitCode != 0 && revoked.Output.Contains("revoked"), revoked.Output);
    }

    [Fact]
    public Task Gpgsm_with_ocsp_enabled_sees_good_then_revoked() => GpgsmSeesGoodThenRevokedAsync(app);

    /// <summary>gpgsm 2.2 verifies a signed message, asking dirmngr for OCSP (no CRL), before and after a revocation.</summary>
    internal static async Task GpgsmSeesGoodThenRevokedAsync(CertPortalApp app)
    {
        Tool.Require("gpgsm", "gpgsm");
        Tool.Require("dirmngr", "dirmngr");
        var email = $"gpgsm.ocsp.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (issued, key) = await app.IssueAsync(email, "signing", "RSA-2048");
        using var rp = await RelyingParty.FetchAsync(issued.CertificatePem);
        var home = rp.File("gnupg");
        Directory.CreateDirectory(home);
        File.SetUnixFileMode(home, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var env = new Dictionary<string, string> { ["GNUPGHOME"] = home };
        try
        {
            File.WriteAllText(Path.Combine(home, "trustlist.txt"), rp.Root.GetCertHashString(HashAlgorithmName.SHA1).Chunk(2).Select(c => new string(c))
                .Aggregate((a, b) => a + ":" + b) + " S\n");
            // OCSP only (no CRL), and not for the trusted root itself: a root has no OCSP URL, and dirmngr would ask for one.
            File.WriteAllText(Path.Combine(home, "gpgsm.conf"), "disable-crl-checks\nenable-ocsp\ndisable-trusted-cert-crl-check\n");
            File.WriteAllText(Path.Combine(home, "dirmngr.conf"), "allow-ocsp\n");
            Tool.Run("gpgsm", ["--batch", "--import", rp.RootFile, rp.IssuingFile, rp.LeafFile], env: env).EnsureSuccess();
            var message = rp.Write("message.txt", "Signed for the OCSP test\n");
            var keyFile = rp.Write("leaf.key", key.PrivateKeyPem);
            var signature = rp.File("message.p7s");
            Tool.Run("openssl", ["cms", "-sign", "-binary", "-in", message, "-signer", rp.LeafFile, "-inkey", keyFile, "-certfile", rp.IssuingFile,
                "-outform", "DER", "-out", signature]).EnsureSuccess();

            var good = Tool.Run("gpgsm", ["--batch", "--verify", signature, message], env: env, timeoutSeconds: 90);
            Assert.True(good.ExitCode == 0 && good.Output.Contains("Good signature"), good.Output);
            await Http.EnsureStatus(await app.RevokeAsync(issued.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
            var revoked = Tool.Run("gpgsm", ["--batch", "--verify", signature, message], env: env, timeoutSeconds: 90);
            Assert.True(revoked.ExitCode != 0 && revoked.Output.Contains("Certificate revoked"), revoked.Output);
        }
        finally
        {
            Tool.Run("gpgconf", ["--kill", "all"], env: env);
        }
    }
}

/// <summary>An EC hierarchy (P-256 issuing CA and root): the responder signs with RSA all the same, because gpgsm's dirmngr
/// 2.2 cannot verify an ECDSA-signed OCSP response ("Provided object is too short"); this fails if that ever changes.</summary>
public sealed class OcspEcHierarchyTests(OcspEcHierarchyTests.EcApp app) : IClassFixture<OcspEcHierarchyTests.EcApp>
{
    public sealed class EcApp : CertPortalApp
    {
        protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
        {
            ["Ca:RootKeyAlgorithm"] = "EC-P256",
            ["Ca:IssuingKeyAlgorithm"] = "EC-P256",
        };
    }

    [Fact]
    public Task Gpgsm_follows_ocsp_under_an_ec_issuing_ca() => OcspResponderTests.GpgsmSeesGoodThenRevokedAsync(app);
}

/// <summary>The host's shutdown stopped the responder after its Dispose once in the suite; that stop must not throw out of
/// the shutdown.</summary>
public sealed class OcspResponderShutdownTests
{
    [Fact]
    public async Task A_stop_after_dispose_does_not_throw()
    {
        await using var app = new CertPortalApp();
        await app.InitializeAsync();
        var responder = app.Service<CertPortal.Ocsp.OcspResponder>();
        responder.Dispose();
        Assert.Null(await Record.ExceptionAsync(() => responder.StopAsync(CancellationToken.None)));
        Assert.Null(await Record.ExceptionAsync(app.StopAsync));
    }
}
