using System.Net;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Oracles;

/// <summary>OpenSSL, with keys and CSRs made by `openssl req`, checks what we issue the way a relying
/// party would: chain from AIA, CRLs from the distribution points, S/MIME purposes, CMS round trips.</summary>
public sealed class OpenSslOracleTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    private const string Message = "Quarterly numbers attached.\r\nRegards, Alice\r\n";

    public static TheoryData<string, string> Cases => new()
    {
        { "signing", "RSA-2048" }, { "signing", "EC-P256" },
        { "encryption", "RSA-3072" }, { "encryption", "EC-P384" },
        { "dual", "RSA-2048" }, { "dual", "EC-P256" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Openssl_verifies_chain_and_crl_then_reports_revocation(string profile, string algorithm)
    {
        Tool.Require("openssl", "openssl");
        var email = $"{profile}.{algorithm.ToLowerInvariant()}.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (key, csr) = SubscriberKeyPair.GenerateWithOpenSsl(algorithm, $"/CN={email}");
        var token = await app.CreateTokenAsync(email, profile);
        var issued = await app.EnrollAsync(token.Token, csr);

        using (var rp = await RelyingParty.FetchAsync(issued.CertificatePem))
        {
            foreach (var purpose in AcceptedPurposes(profile, algorithm))
            {
                var ok = Verify(rp, purpose);
                Assert.True(ok.ExitCode == 0 && ok.Stdout.Contains(": OK"), $"-purpose {purpose}: {ok.Output}");
            }
            foreach (var purpose in RefusedPurposes(profile, algorithm))
            {
                // Key usage must not allow more than the profile: the wrong purpose is refused.
                var refused = Verify(rp, purpose);
                Assert.NotEqual(0, refused.ExitCode);
                Assert.Contains("unsuitable certificate purpose", refused.Output);
            }

            var keyFile = rp.Write("key.pem", key.PrivateKeyPem);
            var msgFile = rp.Write("msg.txt", Message);
            if (profile != "encryption")
            {
                Tool.Run("openssl", ["cms", "-sign", "-nodetach", "-binary", "-in", msgFile, "-signer", rp.LeafFile, "-inkey", keyFile,
                    "-certfile", rp.IssuingFile, "-outform", "DER", "-out", rp.File("signed.der")]).EnsureSuccess();
                var verified = CmsVerify(rp);
                Assert.True(verified.ExitCode == 0, verified.Output);
                Assert.Contains("Verification successful", verified.Stderr);
                Assert.Equal(Message, File.ReadAllText(rp.File("verified.txt")));
            }
            if (profile != "signing")
            {
                Tool.Run("openssl", ["cms", "-encrypt", "-aes256", "-binary", "-in", msgFile, "-outform", "DER", "-out", rp.File("enc.der"), rp.LeafFile]).EnsureSuccess();
                Tool.Run("openssl", ["cms", "-decrypt", "-binary", "-inform", "DER", "-in", rp.File("enc.der"), "-recip", rp.LeafFile, "-inkey", keyFile,
                    "-out", rp.File("dec.txt")]).EnsureSuccess();
                Assert.Equal(Message, File.ReadAllText(rp.File("dec.txt")));
            }
        }

        Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(issued.SerialNumber, "keyCompromise")).StatusCode);

        using (var rp = await RelyingParty.FetchAsync(issued.CertificatePem))
        {
            var purpose = AcceptedPurposes(profile, algorithm).First();
            var revoked = Verify(rp, purpose);
            Assert.NotEqual(0, revoked.ExitCode);
            Assert.Contains("certificate revoked", revoked.Output);

            var crlText = Tool.Run("openssl", ["crl", "-in", rp.CrlFile, "-noout", "-text"]).EnsureSuccess().Stdout;
            Assert.Contains($"Serial Number: {issued.SerialNumber}", crlText);
            Assert.Contains("Key Compromise", crlText);
        }
    }

    /// <summary>OpenSSL's smimeencrypt purpose demands keyEncipherment, which an EC key must not have
    /// (ECDH is keyAgreement): for EC encryption certificates check the chain with `any` and prove
    /// encryption with the CMS round trip instead.</summary>
    private static IEnumerable<string> AcceptedPurposes(string profile, string algorithm)
    {
        if (profile is "signing" or "dual") yield return "smimesign";
        if (profile is "encryption" or "dual") yield return algorithm.StartsWith("RSA", StringComparison.Ordinal) ? "smimeencrypt" : "any";
    }

    private static IEnumerable<string> RefusedPurposes(string profile, string algorithm)
    {
        if (profile == "signing") yield return "smimeencrypt";
        if (profile == "encryption") yield return "smimesign";
    }

    private static Tool.Result Verify(RelyingParty rp, string purpose) =>
        Tool.Run("openssl", ["verify", "-CAfile", rp.RootFile, "-untrusted", rp.IssuingFile, "-CRLfile", rp.CrlFile, "-crl_check_all",
            "-purpose", purpose, rp.LeafFile]);

    private static Tool.Result CmsVerify(RelyingParty rp) =>
        Tool.Run("openssl", ["cms", "-verify", "-binary", "-inform", "DER", "-in", rp.File("signed.der"), "-CAfile", rp.TrustBundleWithCrls,
            "-crl_check_all", "-purpose", "smimesign", "-out", rp.File("verified.txt")]);
}
