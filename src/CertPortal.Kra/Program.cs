using System.Security.Cryptography;
using Org.BouncyCastle.Cms;
using Org.BouncyCastle.Security;

// certportal-kra: what a key recovery agent runs on their own machine. The server sends each agent
// its share encrypted (CMS) to the agent's certificate; only the agent's private key opens it.
//
//   certportal-kra decrypt-share --share share.pem --key agent-key.pem
//
// prints the share (base64) to submit with POST /api/v1/recoveries/{id}/approvals. An encrypted
// key file ("ENCRYPTED PRIVATE KEY") takes its passphrase from CERTPORTAL_KRA_PASSPHRASE or stdin.
return Kra.Run(args);

internal static class Kra
{
    public static int Run(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.WriteLine("usage: certportal-kra decrypt-share --share <share.pem> --key <agent-key.pem>");
            return args.Length == 0 ? 2 : 0;
        }
        if (args[0] != "decrypt-share")
        {
            Console.Error.WriteLine($"unknown command '{args[0]}' (try --help)");
            return 2;
        }
        var options = ParseOptions(args[1..]);
        if (!options.TryGetValue("--share", out var sharePath) || !options.TryGetValue("--key", out var keyPath))
        {
            Console.Error.WriteLine("decrypt-share needs --share <file> and --key <file>");
            return 2;
        }
        byte[]? pkcs8 = null;
        byte[]? share = null;
        try
        {
            pkcs8 = LoadPkcs8(File.ReadAllText(keyPath));
            share = DecryptShare(ReadCms(File.ReadAllText(sharePath)), pkcs8);
            Console.WriteLine(Convert.ToBase64String(share));
            return 0;
        }
        catch (Exception e) when (e is IOException or CryptographicException or CmsException or Org.BouncyCastle.Crypto.CryptoException or FormatException or ArgumentException or InvalidOperationException)
        {
            Console.Error.WriteLine($"cannot decrypt the share: {e.Message}");
            return 1;
        }
        finally
        {
            if (pkcs8 is not null) CryptographicOperations.ZeroMemory(pkcs8);
            if (share is not null) CryptographicOperations.ZeroMemory(share);
        }
    }

    private static Dictionary<string, string> ParseOptions(string[] args)
    {
        var result = new Dictionary<string, string>();
        for (var i = 0; i + 1 < args.Length; i += 2) result[args[i]] = args[i + 1];
        return result;
    }

    private static byte[] ReadCms(string pem)
    {
        if (!PemEncoding.TryFind(pem, out var fields) || pem[fields.Label] is not ("CMS" or "PKCS7"))
            throw new FormatException("the share file is not a CMS PEM block");
        return Convert.FromBase64String(pem[fields.Base64Data]);
    }

    /// <summary>The agent key as PKCS#8 DER, whether RSA or EC, plain or passphrase-protected.</summary>
    private static byte[] LoadPkcs8(string pem)
    {
        var encrypted = pem.Contains("ENCRYPTED PRIVATE KEY", StringComparison.Ordinal);
        var passphrase = encrypted ? Environment.GetEnvironmentVariable("CERTPORTAL_KRA_PASSPHRASE") ?? Console.In.ReadLine() ?? "" : null;
        foreach (var create in new Func<AsymmetricAlgorithm>[] { RSA.Create, ECDiffieHellman.Create })
        {
            using var key = create();
            try
            {
                if (encrypted) key.ImportFromEncryptedPem(pem, passphrase);
                else key.ImportFromPem(pem);
                return key.ExportPkcs8PrivateKey();
            }
            catch (Exception e) when (e is ArgumentException or CryptographicException) { /* try the other key type */ }
        }
        throw new CryptographicException("the key file holds no RSA or EC private key this passphrase opens");
    }

    private static byte[] DecryptShare(byte[] cms, byte[] pkcs8)
    {
        var key = PrivateKeyFactory.CreateKey(pkcs8);
        var enveloped = new CmsEnvelopedData(cms);
        foreach (var recipient in enveloped.GetRecipientInfos().GetRecipients())
        {
            try { return recipient.GetContent(key); }
            catch (Exception e) when (e is CmsException or Org.BouncyCastle.Crypto.CryptoException) { /* not this recipient, or a damaged share */ }
        }
        throw new CryptographicException("this key is not the one the share was encrypted to");
    }
}
