using System.Security.Cryptography;
using CertPortal.Escrow;

namespace CertPortal.Kra;

/// <summary>The certportal-kra commands (Program.cs runs them with the process's console).</summary>
public static class KraCli
{
    public const string Usage = """
        usage:
          certportal-kra create-agent --name <name> --key-out <agent-key.pem> --cert-out <agent-cert.pem>
                                      [--algorithm RSA-3072|RSA-4096|EC-P256|EC-P384] [--days 1095]
                                      [--passphrase-file <file>|-]
              New key pair (private key encrypted with the passphrase, AES-256/PBKDF2) and a self-signed
              certificate for the administrator to register; prints its SHA-256 fingerprint to compare
              out of band.
          certportal-kra decrypt-share --share <share.pem> --key <agent-key.pem> [--passphrase-file <file>|-]
                                       [--output sealed|plaintext]
              Decrypts the share downloaded from GET /api/v1/recoveries/{id}/share (the CMS block, followed by the
              request's certificate) and seals it, with the request's id, to that certificate: prints the sealed
              share (base64) for POST /api/v1/recoveries/{id}/approvals {"sealedShare": ...} or the console's form.
              It approves that one request only; the plaintext share never leaves this machine.
              --output plaintext prints the bare share instead, for a server that does not yet accept sealed
              shares: the same for every request of the key, so keep it out of shell history and logs.

        The passphrase comes from --passphrase-file (first line; "-" = stdin), else the environment
        variable CERTPORTAL_KRA_PASSPHRASE, else the first line of stdin; never from the command line.
        Exit codes: 0 done, 1 failed (message on stderr), 2 bad command line.
        """;

    public const string PassphraseVariable = "CERTPORTAL_KRA_PASSPHRASE";

    public static int Run(string[] args, TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        try
        {
            if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
            {
                (args.Length == 0 ? stderr : stdout).WriteLine(Usage);
                return args.Length == 0 ? 2 : 0;
            }
            var options = ParseOptions(args[1..]);
            switch (args[0])
            {
                case "create-agent": CreateAgent(options, stdin, stdout); return 0;
                case "decrypt-share": DecryptShare(options, stdin, stdout, stderr); return 0;
                default: throw new KraUsageException($"Unknown command '{args[0]}'.");
            }
        }
        catch (KraUsageException e)
        {
            stderr.WriteLine(e.Message);
            stderr.WriteLine("Try certportal-kra --help.");
            return 2;
        }
        catch (KraException e)
        {
            stderr.WriteLine("certportal-kra: " + e.Message);
            return 1;
        }
    }

    private static void CreateAgent(Options o, TextReader stdin, TextWriter stdout)
    {
        o.AllowOnly("--name", "--key-out", "--cert-out", "--algorithm", "--days", "--passphrase-file");
        var algorithm = AgentAlgorithmNames.Parse(o.Optional("--algorithm") ?? "RSA-3072");
        var days = int.TryParse(o.Optional("--days") ?? "1095", out var d) ? d : throw new KraUsageException("--days must be a number.");
        var keyOut = o.Required("--key-out");
        var certOut = o.Required("--cert-out");
        // Two new files: the certificate written over the key (one path given twice, or an old file) left an agent whose shares
        // no one could ever decrypt, and the tool said it had worked.
        if (string.Equals(Path.GetFullPath(keyOut), Path.GetFullPath(certOut), StringComparison.Ordinal))
            throw new KraUsageException("--key-out and --cert-out must name two different files.");
        foreach (var path in new[] { keyOut, certOut })
            if (File.Exists(path) || Directory.Exists(path)) throw new KraException($"'{path}' exists; give a new file name (nothing was written).");
        var credentials = AgentEnrollment.Create(o.Required("--name"), algorithm, Passphrase(o, stdin), days);
        var keyWritten = false;
        try
        {
            // Both created new (never over another file); the key file 0600 before anything is written into it.
            var fileOptions = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows()) fileOptions.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            using (var stream = new FileStream(keyOut, fileOptions))
            using (var writer = new StreamWriter(stream))
                writer.Write(credentials.EncryptedPrivateKeyPem);
            keyWritten = true;
            using (var stream = new FileStream(certOut, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write }))
            using (var writer = new StreamWriter(stream))
                writer.Write(credentials.CertificatePem);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A key without its certificate was never registered: removed, so the same command can be run again.
            if (keyWritten) File.Delete(keyOut);
            throw new KraException($"Cannot write the key or certificate: {e.Message}", e);
        }
        stdout.WriteLine($"SHA-256 fingerprint: {credentials.Sha256Fingerprint}");
    }

    private static void DecryptShare(Options o, TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        o.AllowOnly("--share", "--key", "--passphrase-file", "--output");
        var (sharePath, keyPath) = (o.Required("--share"), o.Required("--key"));
        var plaintext = (o.Optional("--output") ?? "sealed") switch
        {
            "sealed" => false,
            "plaintext" => true,
            var other => throw new KraUsageException($"--output must be sealed or plaintext, not '{other}'."),
        };
        var sharePem = ReadText(sharePath);
        // Before the key is unlocked: a share file without the request's certificate fails at once, not after the passphrase.
        using var submission = plaintext ? null : ShareDecryption.ReadSubmissionCertificate(sharePem);
        var requestId = submission is null ? default : SealedShare.RequestIdOf(submission)
            ?? throw new KraException("The certificate in the share file is not a CertPortal recovery request's (its CN is no request id).");
        var keyPem = ReadText(keyPath);
        byte[]? pkcs8 = null;
        byte[]? share = null;
        try
        {
            pkcs8 = ShareDecryption.LoadPkcs8(keyPem, () => Passphrase(o, stdin));
            share = ShareDecryption.Decrypt(ShareDecryption.ReadCmsPem(sharePem), pkcs8);
            if (submission is null)
            {
                stdout.WriteLine(Convert.ToBase64String(share));
                return;
            }
            stdout.WriteLine(Convert.ToBase64String(SealedShare.Seal(requestId, share, submission)));
            // The agent approves the request it meant to: the id is in what it submits, and the server checks it.
            stderr.WriteLine($"Sealed for recovery request {requestId}; it approves that request only.");
        }
        catch (FormatException e)
        {
            throw new KraException("The share file is not valid PEM base64.", e);
        }
        finally
        {
            if (pkcs8 is not null) CryptographicOperations.ZeroMemory(pkcs8);
            if (share is not null) CryptographicOperations.ZeroMemory(share);
        }
    }

    private static string Passphrase(Options o, TextReader stdin) =>
        o.Optional("--passphrase-file") is { } source ? PasswordSource.Read(source, stdin)
        : Environment.GetEnvironmentVariable(PassphraseVariable) is { Length: > 0 } fromEnvironment ? fromEnvironment
        : PasswordSource.Read(PasswordSource.StdinMarker, stdin);

    private static string ReadText(string path)
    {
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new KraException($"Cannot read {path}: {e.Message}", e);
        }
    }

    private static Options ParseOptions(string[] args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < args.Length; i += 2)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal))
                throw new KraUsageException($"Unexpected argument '{args[i]}'.");
            if (i + 1 >= args.Length)
                throw new KraUsageException($"{args[i]} needs a value.");
            if (!values.TryAdd(args[i], args[i + 1]))
                throw new KraUsageException($"{args[i]} is given twice.");
        }
        return new Options(values);
    }

    private sealed class Options(Dictionary<string, string> values)
    {
        public string Required(string name) =>
            values.TryGetValue(name, out var v) && v.Length > 0 ? v : throw new KraUsageException($"{name} is required.");

        public string? Optional(string name) => values.GetValueOrDefault(name);

        public void AllowOnly(params string[] names)
        {
            foreach (var key in values.Keys)
                if (!names.Contains(key))
                    throw new KraUsageException($"Unknown option {key}.");
        }
    }
}
