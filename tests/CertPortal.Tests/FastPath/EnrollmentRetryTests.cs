using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.FastPath;

/// <summary>Retry without loss: a client that lost the answer to an enrollment that committed collects its
/// certificate by repeating the request; nobody else can spend the token or collect with another key.</summary>
public sealed class EnrollmentRetryTests(EnrollmentRetryTests.LosingApp app) : IClassFixture<EnrollmentRetryTests.LosingApp>
{
    /// <summary>The service, with a switch that fails every commit right after it reached the database: the
    /// enrollment is durable but its answer never reaches the client (as with a crash or a dropped connection).</summary>
    public sealed class LosingApp : CertPortalApp
    {
        public FailAfterCommit Interceptor { get; } = new();
        protected override void ConfigureServices(IServiceCollection services) =>
            services.ConfigureDbContext<SqliteCertPortalDbContext>(o => o.AddInterceptors(Interceptor));
    }

    public sealed class FailAfterCommit : DbTransactionInterceptor
    {
        private volatile bool _armed;
        public bool Armed { get => _armed; set => _armed = value; }
        public override Task TransactionCommittedAsync(System.Data.Common.DbTransaction transaction, TransactionEndEventData eventData,
            CancellationToken cancellationToken = default) =>
            Armed ? throw new IOException("simulated crash after commit") : Task.CompletedTask;
    }

    private static string NewMailbox(string p) => $"{p}.{Guid.NewGuid().ToString("N")[..8]}@example.test";

    [Fact]
    public async Task Repeating_a_successful_enrollment_returns_the_same_certificate_and_another_key_is_refused()
    {
        var email = NewMailbox("retry");
        var token = await app.CreateTokenAsync(email, "signing");
        var key = SubscriberKeyPair.Generate("EC-P256");
        var first = await app.EnrollAsync(token.Token, key.CreateCsrPem(email));

        // Same CSR, and a new CSR for the same key (a new signature): 200 with the certificate already issued.
        foreach (var csr in new[] { key.CreateCsrPem(email), key.CreateCsrPem(email) })
        {
            var again = await app.PostEnrollmentAsync(token.Token, csr);
            await Http.EnsureStatus(again, HttpStatusCode.OK);
            var body = (await again.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!;
            Assert.Equal(first.SerialNumber, body.SerialNumber);
            Assert.Equal(first.CertificatePem, body.CertificatePem);
        }

        // Another key with the spent token: 403, as before.
        var other = await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email)),
            HttpStatusCode.Forbidden);
        Assert.Contains("already been used", other.GetProperty("detail").GetString());
        await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, "not a csr"), HttpStatusCode.Forbidden);
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.Equal(1, await db.Certificates.CountAsync(c => c.Email == email));
    }

    [Fact]
    public async Task A_lost_answer_is_collected_by_retrying_with_the_same_csr()
    {
        var email = NewMailbox("lost");
        var token = await app.CreateTokenAsync(email, "encryption");
        var key = SubscriberKeyPair.Generate("RSA-2048");
        var csr = key.CreateCsrPem(email);

        app.Interceptor.Armed = true;
        HttpResponseMessage lost;
        try { lost = await app.PostEnrollmentAsync(token.Token, csr); }
        finally { app.Interceptor.Armed = false; }
        await Http.AssertProblem(lost, HttpStatusCode.InternalServerError);

        // The enrollment committed although the client never heard of it.
        string serial;
        await using (var scope = app.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            serial = (await db.Certificates.SingleAsync(c => c.Email == email)).SerialNumber;
        }

        var retry = await app.PostEnrollmentAsync(token.Token, csr);
        await Http.EnsureStatus(retry, HttpStatusCode.OK);
        var collected = (await retry.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!;
        Assert.Equal(serial, collected.SerialNumber);
        Assert.Equal("valid", (await app.GetCertificateAsync(serial)).Status);
        await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, SubscriberKeyPair.Generate("RSA-2048").CreateCsrPem(email)),
            HttpStatusCode.Forbidden);
    }

    [Fact]
    public async Task Twenty_concurrent_repeats_of_one_request_all_get_the_one_certificate()
    {
        var email = NewMailbox("repeat");
        var token = await app.CreateTokenAsync(email, "dual");
        var csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email);
        using var start = new SemaphoreSlim(0);
        var tasks = Enumerable.Range(0, 20).Select(async _ => { await start.WaitAsync(); return await app.PostEnrollmentAsync(token.Token, csr); }).ToList();
        start.Release(20);
        var responses = await Task.WhenAll(tasks);

        Assert.Equal(1, responses.Count(r => r.StatusCode == HttpStatusCode.Created));
        Assert.Equal(19, responses.Count(r => r.StatusCode == HttpStatusCode.OK));
        var serials = await Task.WhenAll(responses.Select(async r => (await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("serialNumber").GetString()));
        Assert.Single(serials.Distinct());
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.Equal(1, await db.Certificates.CountAsync(c => c.Email == email));
    }
}
