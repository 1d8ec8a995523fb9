using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Escrow;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Escrow;

/// <summary>gpgsm 2.2 derives a wrong 3DES key for about one salt in 64 (GpgsmPkcs12Quirk). The model of
/// that bug is checked against gpgsm itself: a file the model flags does not import, and the files
/// Pkcs12Files builds for the compatibility format always do.</summary>
public sealed class GpgsmPkcs12QuirkTests
{
    private const string Password = "correct horse battery staple";

    [Fact]
    public void The_model_flags_the_salt_of_a_file_gpgsm_refused()
    {
        // Salts from a file that gpgsm 2.2.40 refused ("decryption failed; trying charset ...") and a
        // sibling that it imported, both 2048 iterations.
        Assert.True(GpgsmPkcs12Quirk.Affects(Convert.FromHexString("72750CDF4C1DDDB79EDD12A0E6BA29F2"), 2048, Password));
        Assert.False(GpgsmPkcs12Quirk.Affects(Convert.FromHexString("6CEE63D0FE313CC2E354720ED6AAE857"), 2048, Password));
    }

    [Fact]
    public void Gpgsm_refuses_a_file_the_model_flags_and_imports_what_Pkcs12Files_builds()
    {
        Tool.Require("gpgsm", "gpgsm");
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=quirk@example.test", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        using var publicOnly = X509CertificateLoader.LoadCertificate(certificate.RawData);
        var pkcs8 = key.ExportPkcs8PrivateKey();
        var pbe = new PbeParameters(PbeEncryptionAlgorithm.TripleDes3KeyPkcs12, HashAlgorithmName.SHA1, 2048);

        // Draw files until one has a salt the model flags (about 1 in 64 per salt; 2,000 draws miss
        // with probability below 1e-13).
        byte[]? flagged = null;
        for (var i = 0; i < 2000 && flagged is null; i++)
        {
            var pfx = new X509Certificate2Collection { certificate }.ExportPkcs12(pbe, Password);
            var parameters = GpgsmPkcs12Quirk.TripleDesPbeParameters(pfx).ToList();
            Assert.Equal(2, parameters.Count); // the certificate bag and the shrouded key bag
            if (GpgsmPkcs12Quirk.Affects(pfx, Password)) flagged = pfx;
        }
        Assert.NotNull(flagged);
        Assert.False(Import(flagged).ExitCode == 0, "gpgsm imported a file the model says it cannot read: the model is wrong");

        for (var i = 0; i < 12; i++)
        {
            var built = Pkcs12Files.Build(publicOnly, pkcs8, [], Password, Pkcs12Format.Compatible3Des, 2048, "Quirk Test (encryption) - CertPortal");
            Assert.False(GpgsmPkcs12Quirk.Affects(built, Password));
            var import = Import(built);
            Assert.True(import.ExitCode == 0, import.Output);
        }
    }

    private static Tool.Result Import(byte[] pfx)
    {
        using var dir = new ToolDir("gpgsm-quirk");
        var home = Path.Combine(dir.Path, "gnupg");
        Directory.CreateDirectory(home, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.WriteAllText(Path.Combine(home, "gpg-agent.conf"), "allow-loopback-pinentry\n");
        var env = new Dictionary<string, string> { ["GNUPGHOME"] = home };
        try
        {
            return Tool.Run("gpgsm", ["--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0", "--import", dir.Write("id.p12", pfx)],
                stdin: Password + "\n", env: env);
        }
        finally
        {
            Tool.Run("gpgconf", ["--kill", "all"], env: env);
        }
    }
}
