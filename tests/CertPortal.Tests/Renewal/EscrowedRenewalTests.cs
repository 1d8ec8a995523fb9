using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Escrow;
using CertPortal.Tests.Escrow;
using CertPortal.Tests.Gal;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace CertPortal.Tests.Renewal;

/// <summary>Encryption keys must be generated and escrowed by the server (policy <c>Required</c>), three recovery agents
/// (2 of 3), renewal always open, publishing to slapd. The clock runs a few minutes ahead of the wall clock, so the agent
/// certificates OpenSSL makes "now" are valid to the service; the signature age allowed covers the difference.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The agents' directory is disposed in DisposeAsync (IAsyncLifetime), which xunit calls for every fixture.")]
public sealed class EscrowedRenewalApp : DirectoryApp
{
    public EscrowedRenewalApp() => Clock = new FakeTimeProvider(DateTimeOffset.UtcNow.AddMinutes(5));

    public ToolDir AgentDir { get; } = new("renewal-agents");
    public List<Agent> Agents { get; } = [];

    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["Escrow:EncryptionKeyGeneration"] = "Required";
            settings["Renewal:OpensBeforeExpiry"] = "400.00:00:00";
            settings["Renewal:MaxSignatureAge"] = "02:00:00";
            return settings;
        }
    }

    public override async Task InitializeAsync()
    {
        Tool.Require("openssl", "openssl");
        await base.InitializeAsync();
        Agents.AddRange(await this.AddThreeRecoveryAgentsAsync(AgentDir));
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        AgentDir.Dispose();
    }
}

/// <summary>An escrowed encryption ID renews itself: an API client signs <c>{"keyAlgorithm":...}</c> with the current key
/// (<c>openssl cms -sign</c>), and the server generates the new key, escrows it to the agents as token enrollment does, and
/// returns it in a PKCS#12 under the password the person chose.</summary>
public sealed class EscrowedRenewalTests(EscrowedRenewalApp app) : IClassFixture<EscrowedRenewalApp>
{
    private const string NewPassword = "my new p12 password";

    [Fact]
    public async Task Escrowed_encryption_id_renews_with_a_new_server_key_that_agents_can_recover_and_the_directory_publishes()
    {
        using var dir = new ToolDir("escrowed-renewal");
        var email = $"ida.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        var (old, oldKeyPem) = await EnrollEscrowedAsync(dir, email);
        // The enrollment's publication first: a clock moved past the outbox's 2-minute claim while it writes makes it stop (as
        // a node whose clock jumped must) and retry 10 minutes later by that clock, which this test never reaches.
        await app.WaitForDirectoryAsync();
        app.Clock!.Advance(TimeSpan.FromMinutes(10)); // renewed later than enrolled, so "newest" is well defined

        // A certificate request (a key of the person's own) is refused: policy wants the server to make and escrow the key.
        var csrRenewal = await app.Client.PostAsJsonAsync("/api/v1/renewals",
            new { cms = RenewalRequests.SignContent(dir, CsrDer(dir, email), old.CertificatePem, oldKeyPem) });
        var csrProblem = await Http.AssertProblem(csrRenewal, HttpStatusCode.UnprocessableEntity);
        Assert.Equal("Renewal needs a server-generated key.", csrProblem.GetProperty("title").GetString());
        Assert.Contains("keyAlgorithm", csrProblem.GetProperty("detail").GetString());

        // As the README's client does it: the binding made by the shell (printf and sha256sum) names this requestId and password.
        var requestId = Guid.NewGuid().ToString();
        var binding = Tool.Run("bash", ["-c", """printf '%s\0%s' "$1" "$2" | sha256sum | cut -d' ' -f1""", "bash", requestId, NewPassword]).EnsureSuccess().Stdout.Trim();
        Assert.Equal(Binding(requestId, NewPassword), binding);
        var cms = RenewalRequests.SignContent(dir, dir.Write("renew.json", $$"""{"keyAlgorithm":"RSA-3072","requestIdAndPasswordSha256":"{{binding}}"}"""),
            old.CertificatePem, oldKeyPem);
        var response = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = NewPassword, requestId });
        await Http.EnsureStatus(response, HttpStatusCode.Created);
        var renewed = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.True(renewed.GetProperty("keyEscrowed").GetBoolean());
        var serial = renewed.GetProperty("serialNumber").GetString()!;
        Assert.NotEqual(old.SerialNumber, serial);
        var pkcs12 = renewed.GetProperty("pkcs12").GetString()!;

        // OpenSSL opens the PKCS#12 with the chosen password: the renewed certificate and a new RSA-3072 key that belongs to it.
        var p12 = dir.Write("renewed.p12", Convert.FromBase64String(pkcs12));
        var newKeyPem = KeyIn(dir, p12, NewPassword);
        var certPem = Tool.Run("openssl", ["pkcs12", "-in", p12, "-nokeys", "-clcerts", "-passin", $"pass:{NewPassword}"]).EnsureSuccess().Stdout;
        using (var inP12 = X509Certificate2.CreateFromPem(certPem))
        using (var issued = X509Certificate2.CreateFromPem(renewed.GetProperty("certificatePem").GetString()!))
        {
            Assert.Equal(issued.RawData, inP12.RawData);
            Assert.Equal(email, issued.GetNameInfo(X509NameType.EmailName, false));
            Assert.Equal(3072, issued.GetRSAPublicKey()!.KeySize);
        }
        Assert.Equal(PublicKeyOf(dir, renewed.GetProperty("certificatePem").GetString()!), PublicKeyOfKey(dir, newKeyPem));
        Assert.NotEqual(PublicKeyOfKey(dir, oldKeyPem), PublicKeyOfKey(dir, newKeyPem));
        var newCert = await app.GetCertificateAsync(serial);
        Assert.Equal("encryption", newCert.Profile);
        // The old certificate stays valid until it expires: mail encrypted to it can still be read with the old key.
        Assert.Equal("valid", (await app.GetCertificateAsync(old.SerialNumber)).Status);

        // The client lost the answer: the same request (same requestId and password) collects the same PKCS#12.
        var again = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = NewPassword, requestId });
        await Http.EnsureStatus(again, HttpStatusCode.OK);
        var collected = await again.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(serial, collected.GetProperty("serialNumber").GetString());
        Assert.Equal(pkcs12, collected.GetProperty("pkcs12").GetString());
        // Renewed once: a request of its own for another requestId is refused as already renewed.
        var otherId = Guid.NewGuid().ToString();
        await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/renewals",
            new { cms = SignServerKeyRequest(dir, "RSA-3072", old.CertificatePem, oldKeyPem, otherId, NewPassword), pkcs12Password = NewPassword, requestId = otherId }),
            HttpStatusCode.Conflict);

        // The new key is escrowed: two agents recover exactly the key the person received.
        var recovery = await app.OpenRecoveryAsync(serial);
        await Http.EnsureStatus(await app.ApproveAsync(app.Agents[0], recovery), HttpStatusCode.OK);
        await Http.EnsureStatus(await app.ApproveAsync(app.Agents[1], recovery), HttpStatusCode.OK);
        var export = await app.Admin.PostAsJsonAsync($"/api/v1/recoveries/{recovery}/pkcs12", new { password = "recovered-password-1" });
        await Http.EnsureStatus(export, HttpStatusCode.OK);
        var recovered = dir.Write("recovered.p12", Convert.FromBase64String((await export.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pkcs12").GetString()!));
        Assert.Equal(newKeyPem, KeyIn(dir, recovered, "recovered-password-1"));

        // The directory gives out the new certificate only (PublishOnlyNewest).
        await app.WaitForDirectoryAsync();
        var published = Assert.Single(app.PublishedCertificates(email));
        using var newest = X509Certificate2.CreateFromPem(renewed.GetProperty("certificatePem").GetString()!);
        Assert.Equal(newest.RawData, published);

        Assert.Contains("certificate.renewed", await app.Admin.GetStringAsync($"/api/v1/audit?target=certificate:{old.SerialNumber}"));
        Assert.Contains("key.escrowed", await app.Admin.GetStringAsync($"/api/v1/audit?target=certificate:{serial}"));
    }

    [Fact]
    public async Task Escrowed_renewal_is_refused_for_a_revoked_or_forged_signer_and_for_bad_parameters()
    {
        using var dir = new ToolDir("escrowed-renewal-refused");
        var run = Guid.NewGuid().ToString("N")[..6];
        var (carol, carolKey) = await EnrollEscrowedAsync(dir, $"carol.{run}@example.test");
        var bob = $"bob.{run}@example.test";
        var (bobCert, bobKey) = await app.IssueAsync(bob, "signing");

        // Another person's key: Bob presents a certificate naming Carol's issuer and serial, made for his own key.
        var forged = RenewalRequests.Forge(carol.CertificatePem, bobKey);
        var forgery = await RenewAsync(dir, "RSA-2048", forged, bobKey.PrivateKeyPem);
        Assert.Equal("Not signed by the certificate's key.", (await Http.AssertProblem(forgery, HttpStatusCode.Forbidden)).GetProperty("title").GetString());
        // His own signing certificate renews only itself, and never with a key the server made.
        var signing = await RenewAsync(dir, "RSA-2048", bobCert.CertificatePem, bobKey.PrivateKeyPem);
        Assert.Equal("Signing keys are never generated by the server.",
            (await Http.AssertProblem(signing, HttpStatusCode.UnprocessableEntity)).GetProperty("title").GetString());

        // Parameters as token enrollment checks them: a known key type, a password of at least 8 characters, a JSON object.
        var badAlgorithm = await RenewAsync(dir, "DSA-1024", carol.CertificatePem, carolKey);
        Assert.Equal("Invalid keyAlgorithm.", (await Http.AssertProblem(badAlgorithm, HttpStatusCode.UnprocessableEntity)).GetProperty("title").GetString());
        var shortId = Guid.NewGuid().ToString();
        var shortPassword = await app.Client.PostAsJsonAsync("/api/v1/renewals",
            new { cms = SignServerKeyRequest(dir, "RSA-2048", carol.CertificatePem, carolKey, shortId, "short"), pkcs12Password = "short", requestId = shortId });
        Assert.Equal("Invalid pkcs12Password.", (await Http.AssertProblem(shortPassword, HttpStatusCode.UnprocessableEntity)).GetProperty("title").GetString());
        var notJson = await RenewAsync(RenewalRequests.SignContent(dir, dir.Write("broken.json", "{keyAlgorithm: RSA"), carol.CertificatePem, carolKey), Guid.NewGuid().ToString());
        Assert.Equal("Unreadable server-key renewal request.", (await Http.AssertProblem(notJson, HttpStatusCode.UnprocessableEntity)).GetProperty("title").GetString());
        // JSON that parses but whose string UTF-16 cannot hold (a lone surrogate): refused, not a 500.
        var loneSurrogate = await RenewAsync(RenewalRequests.SignContent(dir, dir.Write("surrogate.json", "{\"keyAlgorithm\":\"\\ud800\"}"), carol.CertificatePem, carolKey),
            Guid.NewGuid().ToString());
        Assert.Equal("Unreadable server-key renewal request.", (await Http.AssertProblem(loneSurrogate, HttpStatusCode.UnprocessableEntity)).GetProperty("title").GetString());

        // Revoked: its key proves nothing any more; nothing was renewed on the way.
        await Http.EnsureStatus(await app.RevokeAsync(carol.SerialNumber, "affiliationChanged"), HttpStatusCode.OK);
        var revoked = await RenewAsync(dir, "RSA-2048", carol.CertificatePem, carolKey);
        Assert.Equal("Certificate revoked.", (await Http.AssertProblem(revoked, HttpStatusCode.Forbidden)).GetProperty("title").GetString());
        Assert.DoesNotContain("certificate.renewed", await app.Admin.GetStringAsync($"/api/v1/audit?target=certificate:{carol.SerialNumber}"));
    }

    /// <summary>Whoever gets hold of the holder's signed request while it is fresh (a renew.p7 left in a shared folder, a message
    /// a proxy logged without its body) must not be able to send it with a requestId and password of their own and take the
    /// key the server makes, nor collect it once the holder has: the signature names the request it authorises. Before, the
    /// signed content named the key type only, and the first to send it got the new escrowed key under their own password.</summary>
    [Fact]
    public async Task A_copy_of_the_signed_request_sent_with_another_requestId_or_password_gets_no_key()
    {
        using var dir = new ToolDir("escrowed-renewal-copied");
        var (old, keyPem) = await EnrollEscrowedAsync(dir, $"kim.{Guid.NewGuid().ToString("N")[..6]}@example.test");
        var requestId = Guid.NewGuid().ToString();
        var cms = SignServerKeyRequest(dir, "RSA-2048", old.CertificatePem, keyPem, requestId, NewPassword);

        // Sent first by someone else: their own requestId and password, or their own password with the holder's requestId.
        var theirs = await app.Client.PostAsJsonAsync("/api/v1/renewals",
            new { cms, pkcs12Password = "the thief's password", requestId = Guid.NewGuid().ToString() });
        var problem = await Http.AssertProblem(theirs, HttpStatusCode.Forbidden);
        Assert.Equal("Not signed for this request.", problem.GetProperty("title").GetString());
        await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = "the thief's password", requestId }),
            HttpStatusCode.Forbidden);
        await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = NewPassword, requestId = Guid.NewGuid().ToString() }),
            HttpStatusCode.Forbidden);
        using (var scope = app.Services.CreateScope())
            Assert.Equal(0, await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().Certificates.CountAsync(c => c.RenewalOf == old.SerialNumber));

        // The holder's own request is renewed; repeated (a lost answer), it collects the same file under the holder's password.
        var first = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = NewPassword, requestId });
        await Http.EnsureStatus(first, HttpStatusCode.Created);
        var pkcs12 = (await first.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pkcs12").GetString()!;
        KeyIn(dir, dir.Write("kim.p12", Convert.FromBase64String(pkcs12)), NewPassword);
        var repeat = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = NewPassword, requestId });
        await Http.EnsureStatus(repeat, HttpStatusCode.OK);
        Assert.Equal(pkcs12, (await repeat.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pkcs12").GetString());

        // The copy after the holder's request: still nothing for another requestId or password.
        await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = "the thief's password", requestId }),
            HttpStatusCode.Forbidden);
        await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/renewals",
            new { cms, pkcs12Password = "the thief's password", requestId = Guid.NewGuid().ToString() }), HttpStatusCode.Forbidden);
    }

    /// <summary>The requestId is the renewal's idempotency key: a repeat that changes what was asked (the PKCS#12 format, the key type,
    /// the password) is another request under the same key, and is refused as any other request for a renewed certificate is (409),
    /// saying why, as token enrollment refuses a repeat with another password (403, the token used). Before, another format or key
    /// type silently got the first request's file, in the first format and with the first key type.</summary>
    [Fact]
    public async Task A_repeat_with_the_same_requestId_but_another_format_key_type_or_password_is_refused_and_changes_nothing()
    {
        using var dir = new ToolDir("escrowed-renewal-reused-id");
        var (old, keyPem) = await EnrollEscrowedAsync(dir, $"rex.{Guid.NewGuid().ToString("N")[..6]}@example.test");
        var requestId = Guid.NewGuid().ToString();
        var cms = SignServerKeyRequest(dir, "RSA-3072", old.CertificatePem, keyPem, requestId, NewPassword);
        var first = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = NewPassword, requestId });
        await Http.EnsureStatus(first, HttpStatusCode.Created);
        var pkcs12 = (await first.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pkcs12").GetString()!;

        var otherFormat = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = NewPassword, pkcs12Format = "compatible-3des", requestId });
        var problem = await Http.AssertProblem(otherFormat, HttpStatusCode.Conflict);
        Assert.Equal("requestId reused.", problem.GetProperty("title").GetString());
        Assert.Contains("pkcs12Format aes256", problem.GetProperty("detail").GetString());
        var otherKeyType = await app.Client.PostAsJsonAsync("/api/v1/renewals",
            new { cms = SignServerKeyRequest(dir, "EC-P256", old.CertificatePem, keyPem, requestId, NewPassword), pkcs12Password = NewPassword, requestId });
        problem = await Http.AssertProblem(otherKeyType, HttpStatusCode.Conflict);
        Assert.Equal("requestId reused.", problem.GetProperty("title").GetString());
        Assert.Contains("keyAlgorithm RSA-3072", problem.GetProperty("detail").GetString());
        const string otherPassword = "another p12 password";
        var otherPasswordAnswer = await app.Client.PostAsJsonAsync("/api/v1/renewals",
            new { cms = SignServerKeyRequest(dir, "RSA-3072", old.CertificatePem, keyPem, requestId, otherPassword), pkcs12Password = otherPassword, requestId });
        Assert.Equal("requestId reused.", (await Http.AssertProblem(otherPasswordAnswer, HttpStatusCode.Conflict)).GetProperty("title").GetString());

        // Nothing changed: one renewal, and the first request repeated (its format named or left to the default) still collects its file.
        using (var scope = app.Services.CreateScope())
            Assert.Equal(1, await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().Certificates.CountAsync(c => c.RenewalOf == old.SerialNumber));
        var repeat = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = NewPassword, pkcs12Format = "aes256", requestId });
        await Http.EnsureStatus(repeat, HttpStatusCode.OK);
        Assert.Equal(pkcs12, (await repeat.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pkcs12").GetString());
    }

    /// <summary>A client that signs <c>{"keyAlgorithm":...}</c> alone, as before the signature had to name its request, is told what
    /// to sign now, and nothing is renewed; so is one that sends no requestId.</summary>
    [Fact]
    public async Task A_server_key_renewal_whose_signature_names_no_request_is_told_what_to_sign()
    {
        using var dir = new ToolDir("escrowed-renewal-unbound");
        var (old, keyPem) = await EnrollEscrowedAsync(dir, $"lee.{Guid.NewGuid().ToString("N")[..6]}@example.test");
        var unbound = RenewalRequests.SignContent(dir, dir.Write("old-client.json", """{"keyAlgorithm":"RSA-2048"}"""), old.CertificatePem, keyPem);
        var response = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms = unbound, pkcs12Password = NewPassword, requestId = Guid.NewGuid().ToString() });
        var problem = await Http.AssertProblem(response, HttpStatusCode.UnprocessableEntity);
        Assert.Equal("The signature must name its request.", problem.GetProperty("title").GetString());
        Assert.Contains("requestIdAndPasswordSha256", problem.GetProperty("detail").GetString());

        var noRequestId = await app.Client.PostAsJsonAsync("/api/v1/renewals", new
        {
            cms = SignServerKeyRequest(dir, "RSA-2048", old.CertificatePem, keyPem, Guid.NewGuid().ToString(), NewPassword),
            pkcs12Password = NewPassword,
        });
        Assert.Equal("requestId required.", (await Http.AssertProblem(noRequestId, HttpStatusCode.UnprocessableEntity)).GetProperty("title").GetString());
        using var scope = app.Services.CreateScope();
        Assert.Equal(0, await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().Certificates.CountAsync(c => c.RenewalOf == old.SerialNumber));
    }

    [Fact]
    public async Task Concurrent_repeats_of_one_renewal_get_one_certificate_and_the_same_pkcs12_until_the_retry_copy_is_erased()
    {
        using var dir = new ToolDir("escrowed-renewal-race");
        var (old, keyPem) = await EnrollEscrowedAsync(dir, $"rae.{Guid.NewGuid().ToString("N")[..6]}@example.test");
        var requestId = Guid.NewGuid().ToString();
        var cms = SignServerKeyRequest(dir, "EC-P256", old.CertificatePem, keyPem, requestId, NewPassword);

        // A client that timed out and retried four times at once: one renewal, every answer the same PKCS#12.
        var answers = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ =>
            app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = NewPassword, requestId })));
        Assert.Single(answers, a => a.StatusCode == HttpStatusCode.Created);
        Assert.All(answers, a => Assert.Contains(a.StatusCode, new[] { HttpStatusCode.Created, HttpStatusCode.OK }));
        var bodies = await Task.WhenAll(answers.Select(a => a.Content.ReadFromJsonAsync<JsonElement>()));
        Assert.Single(bodies.Select(b => b.GetProperty("serialNumber").GetString()).Distinct());
        Assert.Single(bodies.Select(b => b.GetProperty("pkcs12").GetString()).Distinct());

        // The sealed copy lives a day (ServerKeyEnrollment.RetryWindow); after the purge the repeat is only "already renewed".
        using (var scope = app.Services.CreateScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            Assert.Equal(1, await db.Certificates.CountAsync(c => c.RenewalOf == old.SerialNumber));
            await ServerKeyEnrollment.PurgeRetryPackagesAsync(db, app.Clock!.GetUtcNow() + ServerKeyEnrollment.RetryWindow + TimeSpan.FromMinutes(1), default);
            Assert.Null(await db.KeyEscrows.Where(e => e.SerialNumber == bodies[0].GetProperty("serialNumber").GetString()).Select(e => e.RetryPackage).SingleAsync());
        }
        await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = NewPassword, requestId }),
            HttpStatusCode.Conflict);
    }

    /// <summary>A server-key renewal of its own: a new requestId, bound with the password into what the key signs.</summary>
    private Task<HttpResponseMessage> RenewAsync(ToolDir dir, string keyAlgorithm, string certificatePem, string keyPem)
    {
        var requestId = Guid.NewGuid().ToString();
        return RenewAsync(SignServerKeyRequest(dir, keyAlgorithm, certificatePem, keyPem, requestId, NewPassword), requestId);
    }

    private Task<HttpResponseMessage> RenewAsync(string cms, string requestId) =>
        app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = NewPassword, requestId });

    /// <summary>An encryption ID enrolled with a server key (as policy requires), and its key as the person has it: from the PKCS#12.</summary>
    internal static async Task<(EnrollmentResponse Cert, string KeyPem)> EnrollEscrowedAsync(CertPortalApp app, ToolDir dir, string email)
    {
        var enrolled = await app.EnrollServerKeyAsync(email, "RSA-2048");
        var p12 = dir.Write(email + ".p12", Convert.FromBase64String(enrolled.GetProperty("pkcs12").GetString()!));
        return (enrolled.Deserialize<EnrollmentResponse>(Http.Json)!, KeyIn(dir, p12, EscrowApp.Pkcs12Password));
    }

    private Task<(EnrollmentResponse Cert, string KeyPem)> EnrollEscrowedAsync(ToolDir dir, string email) => EnrollEscrowedAsync(app, dir, email);

    /// <summary>What the holder signs for a server-made key (<c>openssl cms -sign</c>): the key type, and the request it authorises,
    /// by the SHA-256 of its requestId and the password the new PKCS#12 gets.</summary>
    internal static string SignServerKeyRequest(ToolDir dir, string keyAlgorithm, string certificatePem, string keyPem, string requestId, string password) =>
        RenewalRequests.SignContent(dir, dir.Write($"{Guid.NewGuid():N}.json",
            $$"""{"keyAlgorithm":"{{keyAlgorithm}}","requestIdAndPasswordSha256":"{{Binding(requestId, password)}}"}"""), certificatePem, keyPem);

    /// <summary>SHA-256 of the requestId, a zero byte and the password (UTF-8), in hex: what the README's printf | sha256sum makes.</summary>
    internal static string Binding(string requestId, string password) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(requestId + "\0" + password)));

    private static string CsrDer(ToolDir dir, string email)
    {
        var csr = dir.Write($"{Guid.NewGuid():N}.csr", SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email));
        Tool.Run("openssl", ["req", "-in", csr, "-outform", "DER", "-out", csr + ".der"]).EnsureSuccess();
        return csr + ".der";
    }

    /// <summary>The private key in a PKCS#12, as OpenSSL reads it (PKCS#8 PEM, so two files holding one key compare equal).</summary>
    internal static string KeyIn(ToolDir dir, string p12, string password)
    {
        var raw = Tool.Run("openssl", ["pkcs12", "-in", p12, "-nocerts", "-nodes", "-passin", $"pass:{password}"]).EnsureSuccess().Stdout;
        return Tool.Run("openssl", ["pkey", "-in", dir.Write($"{Guid.NewGuid():N}.key", raw)]).EnsureSuccess().Stdout;
    }

    private static string PublicKeyOfKey(ToolDir dir, string keyPem) =>
        Tool.Run("openssl", ["pkey", "-pubout", "-in", dir.Write($"{Guid.NewGuid():N}.key", keyPem)]).EnsureSuccess().Stdout;

    private static string PublicKeyOf(ToolDir dir, string certificatePem) =>
        Tool.Run("openssl", ["x509", "-noout", "-pubkey", "-in", dir.Write($"{Guid.NewGuid():N}.pem", certificatePem)]).EnsureSuccess().Stdout;
}

/// <summary>An expired escrowed ID cannot renew itself. Its own fixture: the clock jumps past the certificate's life, which
/// would also expire the agents' certificates for any test that came after.</summary>
public sealed class EscrowedRenewalExpiryTests(EscrowedRenewalApp app) : IClassFixture<EscrowedRenewalApp>
{
    [Fact]
    public async Task Renewal_signed_while_valid_but_sent_after_expiry_is_refused()
    {
        using var dir = new ToolDir("escrowed-renewal-expired");
        var (cert, keyPem) = await EscrowedRenewalTests.EnrollEscrowedAsync(app, dir, $"dan.{Guid.NewGuid().ToString("N")[..6]}@example.test");
        var requestId = Guid.NewGuid().ToString();
        var cms = EscrowedRenewalTests.SignServerKeyRequest(dir, "RSA-2048", cert.CertificatePem, keyPem, requestId, "my new p12 password");
        app.Clock!.SetUtcNow(cert.NotAfter.AddMinutes(1));
        var expired = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = "my new p12 password", requestId });
        Assert.Equal("Certificate expired.", (await Http.AssertProblem(expired, HttpStatusCode.Forbidden)).GetProperty("title").GetString());
    }
}

/// <summary>Server-generated keys with PKCS#12 files under 600,000 PBKDF2 iterations (OWASP's figure for PBKDF2-HMAC-SHA256,
/// within <c>Escrow:Pkcs12Iterations</c>' range): more than .NET's PKCS#12 loader accepts by default (300,000 per derivation,
/// 1,000,000 per file). Real time, renewal always open, three recovery agents.</summary>
public sealed class StrongPkcs12EscrowApp : EscrowApp
{
    public const int Iterations = 600_000;

    public List<Agent> Agents { get; } = [];

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Escrow:EncryptionKeyGeneration"] = "Required",
        ["Escrow:Pkcs12Iterations"] = Iterations.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Renewal:OpensBeforeExpiry"] = "400.00:00:00",
    };

    public override async Task InitializeAsync()
    {
        Tool.Require("openssl", "openssl");
        await base.InitializeAsync();
        for (var i = 0; i < 3; i++) Agents.Add(await AddAgentAsync());
    }
}

/// <summary>A lost answer is collected whatever iteration count the operator chose for PKCS#12 files: the retry checks the
/// password against the sealed copy's MAC, which took .NET's default loader limits and refused every file above them (409).</summary>
public sealed class StrongPkcs12RetryTests(StrongPkcs12EscrowApp app) : IClassFixture<StrongPkcs12EscrowApp>
{
    private const string NewPassword = "my new p12 password";

    [Fact]
    public async Task A_renewal_and_an_enrollment_with_a_lost_answer_collect_their_pkcs12_at_600000_iterations()
    {
        using var dir = new ToolDir("strong-pkcs12-retry");
        var run = Guid.NewGuid().ToString("N")[..6];
        var (old, keyPem) = await EscrowedRenewalTests.EnrollEscrowedAsync(app, dir, $"iris.{run}@example.test");
        var requestId = Guid.NewGuid().ToString();
        var cms = EscrowedRenewalTests.SignServerKeyRequest(dir, "EC-P256", old.CertificatePem, keyPem, requestId, NewPassword);

        var first = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = NewPassword, requestId });
        await Http.EnsureStatus(first, HttpStatusCode.Created);
        var renewed = await first.Content.ReadFromJsonAsync<JsonElement>();
        // The file really is that strong: OpenSSL reports the iteration count of its MAC.
        var p12 = dir.Write("renewed.p12", Convert.FromBase64String(renewed.GetProperty("pkcs12").GetString()!));
        Assert.Contains($"Iteration {StrongPkcs12EscrowApp.Iterations}",
            Tool.Run("openssl", ["pkcs12", "-in", p12, "-info", "-noout", "-passin", $"pass:{NewPassword}"]).EnsureSuccess().Output);

        var again = await app.Client.PostAsJsonAsync("/api/v1/renewals", new { cms, pkcs12Password = NewPassword, requestId });
        await Http.EnsureStatus(again, HttpStatusCode.OK);
        var collected = await again.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(renewed.GetProperty("serialNumber").GetString(), collected.GetProperty("serialNumber").GetString());
        Assert.Equal(renewed.GetProperty("pkcs12").GetString(), collected.GetProperty("pkcs12").GetString());
        // The password still has to open the file: a request signed for this requestId with another password is refused.
        await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/renewals", new
        {
            cms = EscrowedRenewalTests.SignServerKeyRequest(dir, "EC-P256", old.CertificatePem, keyPem, requestId, "another password"),
            pkcs12Password = "another password",
            requestId,
        }), HttpStatusCode.Conflict);

        // Token enrollment's retry checks the password the same way.
        var token = await app.CreateTokenAsync($"ivo.{run}@example.test", "encryption");
        var enrollmentId = Guid.NewGuid().ToString();
        var enrolled = await FastPath.ServerKeyRetryTests.PostServerKeyEnrollmentAsync(app, token.Token, enrollmentId);
        await Http.EnsureStatus(enrolled, HttpStatusCode.Created);
        var enrolledAgain = await FastPath.ServerKeyRetryTests.PostServerKeyEnrollmentAsync(app, token.Token, enrollmentId);
        await Http.EnsureStatus(enrolledAgain, HttpStatusCode.OK);
        Assert.Equal((await enrolled.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pkcs12").GetString(),
            (await enrolledAgain.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pkcs12").GetString());
    }
}
