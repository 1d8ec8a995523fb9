using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using CertPortal.Authority;
using CertPortal.Tests.Escrow;
using CertPortal.Tests.Ocsp;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Standards;

/// <summary>DigiCert's pkilint, the reference S/MIME BR linter, over everything CertPortal signs, in every
/// configuration: issuing CA RSA-3072 / EC-P256 × CN Mailbox / DisplayName, every profile × RSA-2048/3072 and
/// P-256/P-384 CSR keys, server-generated keys, the root and issuing CA certificates (pkix), and the CRLs
/// (<c>crl -p PKIX</c>; <c>-p BR</c> for the issuing CA's), with revocations in them, the delegated OCSP responder
/// certificates (pkix) and OCSP responses (lint_ocsp_response). No WARNING or worse.
/// <para>pkilint lives outside the repository (<c>../shared/tools/pkilint</c>). Where it is absent the test is
/// skipped and says so; <c>CERTPORTAL_REQUIRE_PKILINT=1</c> (set by <c>.ci/run</c>) makes that a failure.</para></summary>
public sealed class PkilintMatrixTests
{
    public static TheoryData<string, string> Configurations => new()
    {
        { "RSA-3072", "Mailbox" },
        { "RSA-3072", "DisplayName" },
        { "EC-P256", "Mailbox" },
        { "EC-P256", "DisplayName" },
    };

    private static readonly string[] Profiles = ["signing", "encryption", "dual"];
    private static readonly string[] CsrKeys = ["RSA-2048", "RSA-3072", "EC-P256", "EC-P384"];

    [SkippableTheory]
    [MemberData(nameof(Configurations))]
    public async Task Everything_signed_is_pkilint_clean(string issuingKey, string commonName)
    {
        var pkilint = Pkilint.Locate();
        await using var app = new LintedApp(issuingKey, commonName);
        await app.InitializeAsync();
        using var dir = new ToolDir("pkilint-matrix");
        var jobs = new List<Pkilint.Job>();
        var serials = new List<string>();

        foreach (var profile in Profiles)
            foreach (var key in CsrKeys)
            {
                var email = $"{profile}.{key}@example.com".ToLowerInvariant();
                var token = await app.CreateTokenAsync(email, profile, "Alice Example");
                var issued = await app.EnrollAsync(token.Token, SubscriberKeyPair.Generate(key).CreateCsrPem(email));
                serials.Add(issued.SerialNumber);
                jobs.Add(new($"{profile} {key}", "smime", ["-d"], dir.Write($"{profile}-{key}.pem", issued.CertificatePem)));
            }

        // A mailbox longer than X.520 lets a commonName be (64 characters): no CN in mailbox mode.
        {
            var email = new string('x', 40) + ".long@mail.engineering-department.example.com";
            var token = await app.CreateTokenAsync(email, "signing", "Alice Example");
            var issued = await app.EnrollAsync(token.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email));
            jobs.Add(new("long mailbox and name", "smime", ["-d"], dir.Write("long.pem", issued.CertificatePem)));
        }

        // Server-generated (escrowed) encryption keys: the escrow needs its minimum of three agents.
        using (var agents = new ToolDir("pkilint-agents"))
        {
            for (var i = 0; i < 3; i++) await app.AddRecoveryAgentAsync(agents);
            foreach (var key in new[] { "RSA-2048", "RSA-3072", "EC-P256" })
            {
                var email = $"generated.{key}@example.com".ToLowerInvariant();
                var token = await app.CreateTokenAsync(email, "encryption", "Bob Example");
                var r = await app.Client.PostAsJsonAsync("/api/v1/enrollments",
                    new { token = token.Token, keyAlgorithm = key, pkcs12Password = EscrowApp.Pkcs12Password });
                await Http.EnsureStatus(r, HttpStatusCode.Created);
                var pem = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement.GetProperty("certificatePem").GetString()!;
                jobs.Add(new($"server-generated {key}", "smime", ["-d"], dir.Write($"generated-{key}.pem", pem)));
            }
        }

        // Revocations with every reason a subscriber certificate may carry, so the CRL has entries to lint.
        string[] reasons = ["keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation", "privilegeWithdrawn", "unspecified"];
        foreach (var (reason, serial) in reasons.Zip(serials.Skip(1).Where((_, i) => i % 2 == 0)))
            await Http.EnsureStatus(await app.RevokeAsync(serial, reason), HttpStatusCode.OK);

        // Strict certificates cannot be held (S/MIME BR 7.2.2): refused, saying why, and the CRL stays BR-clean.
        var hold = await Http.AssertProblem(await app.RevokeAsync(serials[0], "certificateHold"), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("7.2.2", hold.GetProperty("detail").GetString());

        jobs.Add(new("root CA certificate", "pkix", [], dir.Write("root.pem", Pem("CERTIFICATE", await app.Client.GetByteArrayAsync("/ca/root.crt")))));
        jobs.Add(new("issuing CA certificate", "pkix", [], dir.Write("issuing.pem", Pem("CERTIFICATE", await app.Client.GetByteArrayAsync("/ca/issuing.crt")))));
        var issuingCrl = dir.Write("issuing.crl.pem", Pem("X509 CRL", await app.Client.GetByteArrayAsync("/crl/issuing.crl")));
        var rootCrl = dir.Write("root.crl.pem", Pem("X509 CRL", await app.Client.GetByteArrayAsync("/crl/root.crl")));
        jobs.Add(new("issuing CRL (PKIX)", "crl", ["-t", "CRL", "-p", "PKIX"], issuingCrl));
        jobs.Add(new("issuing CRL (BR)", "crl", ["-t", "CRL", "-p", "BR"], issuingCrl));
        jobs.Add(new("root CRL (PKIX)", "crl", ["-t", "ARL", "-p", "PKIX"], rootCrl));

        // OCSP: both delegated responder certificates (pkix), and responses: good, revoked with a reason, the root's answer
        // for the issuing CA, and one carrying a nonce.
        using var issuingCa = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        using var rootCa = X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/root.crt"));
        var ocspCases = new (string Name, byte[] Request)[]
        {
            ("good", OcspProbe.Request(issuingCa, serials[0])),
            ("revoked", OcspProbe.Request(issuingCa, serials[1])),
            ("issuing CA by the root", OcspProbe.Request(rootCa, issuingCa.SerialNumber)),
            ("with nonce", OcspProbe.Request(issuingCa, serials[2], RandomNumberGenerator.GetBytes(16))),
        };
        foreach (var (name, request) in ocspCases)
        {
            var response = await OcspProbe.PostAsync(app.Client, request);
            jobs.Add(new($"OCSP response {name}", "ocsp", [], dir.Write($"ocsp-{jobs.Count}.der", response)));
            if (name is "good" or "issuing CA by the root")
                jobs.Add(new($"OCSP responder certificate ({name})", "pkix", [],
                    dir.Write($"responder-{jobs.Count}.pem", Pem("CERTIFICATE", OcspProbe.Read(response).Basic.GetCerts()[0].GetEncoded()))));
        }

        var findings = pkilint.Run(jobs, dir);
        Assert.True(findings.Count == 0, $"pkilint ({issuingKey} issuing CA, CN {commonName}):\n" + string.Join("\n", findings));
        Assert.Equal(12 + 1 + 3 + 2 + 3 + 4 + 2, jobs.Count);
    }

    [SkippableFact]
    public async Task A_multipurpose_configuration_allows_holds_and_its_certificates_and_crl_are_pkilint_clean()
    {
        var pkilint = Pkilint.Locate();
        await using var app = new LintedApp("RSA-3072", "Mailbox", Oids.PolicyMailboxValidatedMultipurpose);
        await app.InitializeAsync();
        using var dir = new ToolDir("pkilint-multipurpose");
        var (issued, _) = await app.IssueAsync("held@example.com", "signing", "RSA-2048");
        await Http.EnsureStatus(await app.RevokeAsync(issued.SerialNumber, "certificateHold"), HttpStatusCode.OK);
        Assert.Equal("onHold", (await app.GetCertificateAsync(issued.SerialNumber)).Status);
        var crl = dir.Write("issuing.crl.pem", Pem("X509 CRL", await app.Client.GetByteArrayAsync("/crl/issuing.crl")));
        // pkilint's BR CRL profile forbids certificateHold outright (it follows the TLS BR); the PKIX profile applies.
        var findings = pkilint.Run(
        [
            new("multipurpose certificate", "smime", ["-d"], dir.Write("held.pem", issued.CertificatePem)),
            new("issuing CRL with a hold (PKIX)", "crl", ["-t", "CRL", "-p", "PKIX"], crl),
            new("OCSP response for a held certificate", "ocsp", [], dir.Write("held.ocsp.der", await OcspProbe.PostAsync(app.Client,
                OcspProbe.Request(X509CertificateLoader.LoadCertificate(await app.Client.GetByteArrayAsync("/ca/issuing.crt")), issued.SerialNumber)))),
        ], dir);
        Assert.Empty(findings);
    }

    private static string Pem(string label, byte[] der) => PemEncoding.WriteString(label, der) + "\n";

    /// <summary>Lint-clean means a public CA's view: a public-looking CDP/AIA host (pkilint flags 127.0.0.1 as an
    /// internal name) and mailboxes at example.com. Certificates carry those URLs; the test talks to 127.0.0.1.</summary>
    private sealed class LintedApp(string issuingKey, string commonName, string? policy = null) : CertPortalApp, IAsyncDisposable
    {
        protected override IDictionary<string, string?> Settings
        {
            get
            {
                var s = new Dictionary<string, string?>
                {
                    ["PublicBaseUrl"] = "http://pki.example.com",
                    ["PortalUrl"] = BaseUrl,
                    ["Ca:IssuingKeyAlgorithm"] = issuingKey,
                    ["Issuance:SubjectCommonName"] = commonName,
                    ["Issuance:OrganizationName"] = "Example Corporation",
                    ["Issuance:OrganizationIdentifier"] = "NTRGB-12345678",
                };
                if (policy is not null) s["Issuance:PolicyOids:0"] = policy;
                return s;
            }
        }

        async ValueTask IAsyncDisposable.DisposeAsync() => await DisposeAsync();
    }
}

/// <summary>Runs pkilint's own command-line entry points (lint_cabf_smime_cert, lint_pkix_cert, lint_crl, lint_ocsp_response) for many
/// files in one Python process: the wrapper starts one per file, which takes seconds each on a loaded machine.</summary>
public sealed class Pkilint(string libDirectory)
{
    public sealed record Job(string Name, string Kind, string[] Args, string File);

    public const string RequireVariable = "CERTPORTAL_REQUIRE_PKILINT";

    /// <summary>The wrapper <c>shared/tools/pkilint/pkilint</c> beside the repository (or one of its parents, for
    /// worktrees), or <c>$PKILINT</c>. Missing: skipped with the reason, or a failure under CERTPORTAL_REQUIRE_PKILINT=1.</summary>
    public static Pkilint Locate()
    {
        var wrapper = (Environment.GetEnvironmentVariable("PKILINT") is { Length: > 0 } configured ? [configured] : Candidates()).FirstOrDefault(File.Exists);
        var reason = wrapper is null ? "pkilint not found (looked for shared/tools/pkilint/pkilint beside the repository and its parents; or set PKILINT)"
            : Tool.Run("python3", ["-c", "import cryptography"]).ExitCode != 0 ? "python3 lacks the cryptography package pkilint needs (Debian: python3-cryptography)"
            : null;
        if (reason is not null)
        {
            if (Environment.GetEnvironmentVariable(RequireVariable) == "1")
                throw new Xunit.Sdk.XunitException($"{reason}, and {RequireVariable}=1 requires it.");
            Skip.If(true, $"SKIPPED, S/MIME BR lint not run: {reason}.");
        }
        return new Pkilint(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(wrapper!))!, "lib"));
    }

    private static IEnumerable<string> Candidates()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            yield return Path.Combine(dir.FullName, "shared", "tools", "pkilint", "pkilint");
    }

    /// <summary>Every finding at WARNING or worse, prefixed with the job's name; empty when all are clean.</summary>
    public List<string> Run(IReadOnlyList<Job> jobs, ToolDir dir)
    {
        var list = dir.Write("jobs.json", JsonSerializer.Serialize(jobs.Select(j => new { name = j.Name, kind = j.Kind, args = j.Args, file = j.File })));
        var driver = dir.Write("pkilint-batch.py", Driver);
        var result = Tool.Run("python3", [driver, list], env: new Dictionary<string, string> { ["PYTHONPATH"] = libDirectory }, timeoutSeconds: 600);
        Assert.True(result.ExitCode == 0, $"pkilint driver failed:\n{result.Output}");
        var findings = new List<string>();
        foreach (var r in JsonDocument.Parse(result.Stdout).RootElement.EnumerateArray())
            if (r.GetProperty("exit").GetInt32() != 0)
                findings.Add($"{r.GetProperty("name").GetString()}: {r.GetProperty("output").GetString()!.Trim()}");
        return findings;
    }

    private const string Driver = """
        import contextlib, io, json, sys
        from pkilint.bin import lint_cabf_smime_cert, lint_pkix_cert, lint_crl, lint_ocsp_response
        entry = {"smime": lint_cabf_smime_cert.main, "pkix": lint_pkix_cert.main, "crl": lint_crl.main, "ocsp": lint_ocsp_response.main}
        results = []
        for job in json.load(open(sys.argv[1])):
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                code = entry[job["kind"]](["lint", *job["args"], "-s", "WARNING", job["file"]])
            results.append({"name": job["name"], "exit": code, "output": out.getvalue()})
        print(json.dumps(results))
        """;
}
