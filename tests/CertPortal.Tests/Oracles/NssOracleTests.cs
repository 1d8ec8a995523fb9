using System.Net;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Oracles;

/// <summary>NSS (the library inside Thunderbird and Firefox) through its own tools: certutil says the
/// certificate is valid for email signing (-u S) or as an email recipient (-u R), and revoked once the
/// CRL fetched from the certificate's distribution point is imported with crlutil.</summary>
public sealed class NssOracleTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    public static TheoryData<string, string> Cases => new()
    {
        { "signing", "RSA-2048" }, { "signing", "EC-P256" },
        { "encryption", "RSA-2048" }, { "encryption", "EC-P256" },
        { "dual", "RSA-3072" }, { "dual", "EC-P384" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Certutil_says_valid_then_revoked_after_crl_import(string profile, string algorithm)
    {
        Tool.Require("certutil", "libnss3-tools");
        Tool.Require("crlutil", "libnss3-tools");
        var email = $"nss.{profile}.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var (_, csr) = SubscriberKeyPair.GenerateWithOpenSsl(algorithm, $"/CN={email}");
        var issued = await app.EnrollAsync((await app.CreateTokenAsync(email, profile)).Token, csr);

        using var rp = await RelyingParty.FetchAsync(issued.CertificatePem);
        var db = "sql:" + rp.Dir;
        Tool.Run("certutil", ["-N", "-d", db, "--empty-password"]).EnsureSuccess();
        Tool.Run("certutil", ["-A", "-d", db, "-n", "CertPortal Root", "-t", "CT,C,C", "-a", "-i", rp.RootFile]).EnsureSuccess();
        Tool.Run("certutil", ["-A", "-d", db, "-n", "CertPortal Issuing", "-t", ",,", "-a", "-i", rp.IssuingFile]).EnsureSuccess();
        Tool.Run("certutil", ["-A", "-d", db, "-n", "person", "-t", ",,", "-a", "-i", rp.LeafFile]).EnsureSuccess();

        var usages = Usages(profile);
        foreach (var usage in usages)
        {
            var valid = Tool.Run("certutil", ["-V", "-d", db, "-n", "person", "-u", usage]);
            Assert.True(valid.ExitCode == 0 && valid.Stdout.Contains("certificate is valid"), $"-u {usage}: {valid.Output}");
        }
        // Key usage limits the certificate to its profile: NSS refuses the other usage. Except one NSS
        // quirk: for EC keys it accepts digitalSignature in place of keyAgreement for -u R
        // (CERT_CheckKeyUsage, "accept either signature or agreement"), so that case proves nothing.
        foreach (var usage in new[] { "S", "R" }.Except(usages).Where(u => !(u == "R" && algorithm.StartsWith("EC", StringComparison.Ordinal))))
        {
            var refused = Tool.Run("certutil", ["-V", "-d", db, "-n", "person", "-u", usage]);
            Assert.NotEqual(0, refused.ExitCode);
        }

        Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(issued.SerialNumber, "affiliationChanged")).StatusCode);
        using var after = await RelyingParty.FetchAsync(issued.CertificatePem);
        Tool.Run("crlutil", ["-I", "-d", db, "-i", after.IssuingCrlDerFile, "-t", "1"]).EnsureSuccess();
        foreach (var usage in usages)
        {
            var revoked = Tool.Run("certutil", ["-V", "-d", db, "-n", "person", "-u", usage]);
            Assert.NotEqual(0, revoked.ExitCode);
            Assert.Contains("revoked", revoked.Output);
        }
    }

    private static string[] Usages(string profile) => profile switch
    {
        "signing" => ["S"],
        "encryption" => ["R"],
        _ => ["S", "R"],
    };
}
