using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Tests.Infrastructure;

/// <summary>What Windows, Outlook and NSS show of a PKCS#12: its friendlyName, and the localKeyID that pairs the
/// key with its certificate, read with the real openssl and pk12util.</summary>
public static class Pkcs12Attributes
{
    public static void AssertNamedAndKeyedByCertificate(string p12File, string password, string certificatePem, string friendlyName)
    {
        Tool.Require("openssl", "openssl");
        Tool.Require("pk12util", "libnss3-tools");
        using var certificate = X509Certificate2.CreateFromPem(certificatePem);
#pragma warning disable CA5350 // the localKeyID convention (Windows, OpenSSL) is the certificate's SHA-1
        var expectedId = string.Join(' ', Convert.ToHexString(SHA1.HashData(certificate.RawData)).Chunk(2).Select(c => new string(c)));
#pragma warning restore CA5350
        // -info prints the bag attributes of the key bag and of the certificate bags.
        var info = Tool.Run("openssl", ["pkcs12", "-in", p12File, "-info", "-nodes", "-passin", "pass:" + password]).EnsureSuccess().Output;
        var ids = info.Split('\n').Where(l => l.Trim().StartsWith("localKeyID:", StringComparison.Ordinal)).Select(l => l.Trim()["localKeyID:".Length..].Trim()).ToList();
        Assert.Equal([expectedId, expectedId], ids); // the key and its certificate, nothing else
        Assert.Equal(2, info.Split('\n').Count(l => l.Trim() == $"friendlyName: {friendlyName}"));
        var listed = Tool.Run("pk12util", ["-l", p12File, "-W", password]).EnsureSuccess().Stdout;
        Assert.Contains($"Friendly Name: {friendlyName}", listed);
    }
}
