using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Api;

public class EnrollmentApiTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Theory]
    [InlineData("signing", "RSA-2048", X509KeyUsageFlags.DigitalSignature)]
    [InlineData("signing", "EC-P256", X509KeyUsageFlags.DigitalSignature)]
    [InlineData("encryption", "RSA-3072", X509KeyUsageFlags.KeyEncipherment)]
    [InlineData("encryption", "EC-P384", X509KeyUsageFlags.KeyAgreement)]
    [InlineData("dual", "RSA-4096", X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment)]
    [InlineData("dual", "EC-P256", X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyAgreement)]
    public async Task Certificate_follows_the_profile_for_the_key_type(string profile, string algorithm, X509KeyUsageFlags expectedUsage)
    {
        var email = $"{profile}.{algorithm.ToLowerInvariant()}@example.test";
        var (issued, _) = await app.IssueAsync(email, profile, algorithm);
        using var cert = X509Certificate2.CreateFromPem(issued.CertificatePem);

        Assert.Equal(3, cert.Version);
        // .NET prints the RDNs last-first; the encoding is CN, then emailAddress.
        Assert.Equal($"E={email}, CN={email}", cert.Subject);
        var serial = cert.SerialNumberBytes.ToArray();
        Assert.True(serial.Length >= 9 && (serial[0] & 0x80) == 0, "serial positive with >= 64 random bits");
        Assert.Equal(issued.SerialNumber, Convert.ToHexString(serial));

        var ku = cert.Extensions.OfType<X509KeyUsageExtension>().Single();
        Assert.True(ku.Critical);
        Assert.Equal(expectedUsage, ku.KeyUsages);
        var eku = cert.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single();
        Assert.Equal([Oids.EmailProtection], eku.EnhancedKeyUsages.Cast<Oid>().Select(o => o.Value));
        var san = cert.Extensions.Single(e => e.Oid!.Value == Oids.SubjectAltName);
        Assert.False(san.Critical);
        Assert.Equal([email], SubjectAltNames.ReadRfc822Names(san.RawData, out var others));
        Assert.Equal(0, others);
        var aia = cert.Extensions.OfType<X509AuthorityInformationAccessExtension>().Single();
        Assert.Equal([$"{app.BaseUrl}/ca/issuing.crt"], aia.EnumerateCAIssuersUris());
        Assert.Equal([$"{app.BaseUrl}/ocsp"], aia.EnumerateOcspUris());
        Assert.Contains($"{app.BaseUrl}/crl/issuing.crl", Encoding.ASCII.GetString(cert.Extensions.Single(e => e.Oid!.Value == Oids.CrlDistributionPoints).RawData));
        Assert.Equal([Oids.PolicyMailboxValidatedStrict], CertificatePolicies.Read(cert.Extensions.Single(e => e.Oid!.Value == Oids.CertificatePolicies)));
        Assert.NotNull(cert.Extensions.OfType<X509SubjectKeyIdentifierExtension>().SingleOrDefault());
        var aki = cert.Extensions.OfType<X509AuthorityKeyIdentifierExtension>().Single();
        using var issuing = X509Certificate2.CreateFromPem(issued.ChainPem);
        Assert.Equal(issuing.Extensions.OfType<X509SubjectKeyIdentifierExtension>().Single().SubjectKeyIdentifierBytes.ToArray(), aki.KeyIdentifier!.Value.ToArray());
        Assert.Null(aki.NamedIssuer);
        Assert.True((cert.NotAfter - cert.NotBefore).TotalDays <= 825);

        var record = await app.GetCertificateAsync(issued.SerialNumber);
        Assert.Equal("valid", record.Status);
        Assert.Equal(profile, record.Profile);
        Assert.Equal(algorithm, record.KeyAlgorithm);
        Assert.Equal(cert.RawData, X509Certificate2.CreateFromPem(record.CertificatePem).RawData);
    }

    [Fact]
    public async Task Certificate_lookup_accepts_lower_case_and_colons_and_refuses_nonsense()
    {
        var (issued, _) = await app.IssueAsync("lookup.serial@example.test", "signing");
        var colons = string.Join(':', Enumerable.Range(0, issued.SerialNumber.Length / 2).Select(i => issued.SerialNumber.Substring(i * 2, 2))).ToLowerInvariant();
        Assert.Equal(issued.SerialNumber, (await app.GetCertificateAsync(colons)).SerialNumber);
        // As an ASN.1 dump or a field padded to 20 octets shows it: leading zero octets name the same integer.
        Assert.Equal(issued.SerialNumber, (await app.GetCertificateAsync("00:00:" + colons)).SerialNumber);
        Assert.Equal(issued.SerialNumber, (await app.GetCertificateAsync("0" + issued.SerialNumber)).SerialNumber);
        await Http.AssertProblem(await app.Client.GetAsync("/api/v1/certificates/ABCDEF0123456789"), HttpStatusCode.NotFound);
        await Http.AssertProblem(await app.Client.GetAsync("/api/v1/certificates/not-hex"), HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task A_token_is_spent_exactly_once()
    {
        var token = await app.CreateTokenAsync("once@example.test", "signing");
        var key = SubscriberKeyPair.Generate("EC-P256");
        await app.EnrollAsync(token.Token, key.CreateCsrPem("once@example.test"));
        // Another key: refused. (The same key again collects the certificate: FastPath.EnrollmentRetryTests.)
        var other = SubscriberKeyPair.Generate("EC-P256");
        var again = await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, other.CreateCsrPem("once@example.test")), HttpStatusCode.Forbidden);
        Assert.Contains("already been used", again.GetProperty("detail").GetString());
        await Http.AssertProblem(await app.PostEnrollmentAsync("cpt_unknown-token-value", key.CreateCsrPem("once@example.test")), HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task Twenty_concurrent_enrollments_with_one_token_give_exactly_one_certificate()
    {
        var token = await app.CreateTokenAsync("race@example.test", "encryption");
        var csrs = Enumerable.Range(0, 20).Select(_ => SubscriberKeyPair.Generate("EC-P256").CreateCsrPem("race@example.test")).ToList();
        using var start = new SemaphoreSlim(0);
        var tasks = csrs.Select(async csr => { await start.WaitAsync(); return await app.PostEnrollmentAsync(token.Token, csr); }).ToList();
        start.Release(20);
        var responses = await Task.WhenAll(tasks);

        Assert.Equal(1, responses.Count(r => r.StatusCode == HttpStatusCode.Created));
        Assert.Equal(19, responses.Count(r => r.StatusCode == HttpStatusCode.Forbidden));
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.Equal(1, await db.Certificates.CountAsync(c => c.Email == "race@example.test"));
        Assert.Equal(1, await db.AuditEvents.CountAsync(a => a.Action == "certificate.issued" && a.Details!.Contains(token.Id.ToString())));
    }

    public static TheoryData<string, string, HttpStatusCode, string> BadCsrs => new()
    {
        { "another mailbox in CN", "CN=mallory@example.test", HttpStatusCode.UnprocessableEntity, "mallory@example.test" },
        { "another mailbox in emailAddress", "CN=Victim, E=mallory@example.test", HttpStatusCode.UnprocessableEntity, "mallory@example.test" },
        { "another mailbox in a requested SAN", "SAN", HttpStatusCode.UnprocessableEntity, "mallory@example.test" },
        { "RSA-1024 key", "RSA-1024", HttpStatusCode.UnprocessableEntity, "2048" },
        { "P-521 key", "EC-P521", HttpStatusCode.UnprocessableEntity, "P-256" },
        { "bad signature", "TAMPER", HttpStatusCode.UnprocessableEntity, "signature" },
        { "not a CSR", "GARBAGE", HttpStatusCode.UnprocessableEntity, "PKCS#10" },
        { "empty CSR", "EMPTY", HttpStatusCode.BadRequest, "csr" },
        { "oversized CSR", "HUGE", HttpStatusCode.BadRequest, "larger" },
    };

    [Theory]
    [MemberData(nameof(BadCsrs))]
    public async Task Bad_csrs_are_refused_with_the_reason_and_leave_the_token_unspent(string _, string variant, HttpStatusCode status, string mentioned)
    {
        const string email = "victim@example.test";
        var token = await app.CreateTokenAsync(email, "dual");
        var csr = variant switch
        {
            "RSA-1024" or "EC-P521" => SubscriberKeyPair.Generate(variant).CreateCsrPem(email),
            "SAN" => SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email, customize: r =>
            {
                var san = new SubjectAlternativeNameBuilder();
                san.AddEmailAddress("mallory@example.test");
                r.CertificateExtensions.Add(san.Build());
            }),
            "TAMPER" => Tamper(SubscriberKeyPair.Generate("RSA-2048").CreateCsrPem(email)),
            "GARBAGE" => "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----",
            "EMPTY" => "",
            "HUGE" => new string('A', 20_000),
            _ => SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email, variant),
        };
        var problem = await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, csr), status);
        Assert.Contains(mentioned, problem.GetProperty("detail").GetString(), StringComparison.OrdinalIgnoreCase);

        // Nothing changed: the token still works.
        var ok = await app.EnrollAsync(token.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email));
        Assert.NotEmpty(ok.SerialNumber);
    }

    [Theory]
    [InlineData("{\"token\": \"x\", \"csr\": ", "application/json", HttpStatusCode.BadRequest)]
    [InlineData("[1,2,3]", "application/json", HttpStatusCode.BadRequest)]
    [InlineData("", "application/json", HttpStatusCode.BadRequest)]
    [InlineData("token=x&csr=y", "application/x-www-form-urlencoded", HttpStatusCode.UnsupportedMediaType)]
    public async Task Malformed_bodies_get_4xx_problem_details(string body, string contentType, HttpStatusCode status)
    {
        var r = await app.Client.PostAsync("/api/v1/enrollments", new StringContent(body, Encoding.UTF8, contentType));
        await Http.AssertProblem(r, status);
    }

    [Theory]
    [InlineData("/api/v1/enrollments")]
    [InlineData("/api/v1/tokens")]
    public async Task An_oversized_body_gets_413_problem_details(string path)
    {
        // Raw socket: the server answers before reading the megabyte, so HttpClient would only see a broken pipe.
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync("127.0.0.1", app.Port);
        await using var stream = tcp.GetStream();
        var head = $"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {CertPortalApp.AdminKey}\r\n" +
                   "Content-Type: application/json\r\nContent-Length: 1048576\r\nConnection: close\r\n\r\n{\"token\":\"";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
        var response = await new StreamReader(stream).ReadToEndAsync();
        Assert.StartsWith("HTTP/1.1 413", response);
        Assert.Contains("application/problem+json", response);
        Assert.Contains("too large", response);
    }

    [Fact]
    public async Task Unknown_routes_and_health_answer_sensibly()
    {
        Assert.Equal("Healthy", await app.Client.GetStringAsync("/healthz"));
        await Http.AssertProblem(await app.Client.GetAsync("/api/v1/nothing-here"), HttpStatusCode.NotFound);
        var openApi = await app.Client.GetStringAsync("/swagger/v1/swagger.json");
        foreach (var path in new[] { "/api/v1/tokens", "/api/v1/enrollments", "/api/v1/certificates/{serialNumber}/revoke",
                     "/api/v1/certificates/{serialNumber}/release", "/api/v1/directory/{email}/certificates", "/crl/issuing.crl" })
            Assert.Contains($"\"{path}\"", openApi);
        Assert.Contains("swagger-ui", await app.Client.GetStringAsync("/swagger/index.html"));
    }

    private static string Tamper(string csrPem)
    {
        var der = PemEncoding.Find(csrPem) is var f ? Convert.FromBase64String(csrPem[f.Base64Data]) : [];
        der[^5] ^= 0x5A; // inside the signature BIT STRING
        return PemEncoding.WriteString("CERTIFICATE REQUEST", der);
    }
}
