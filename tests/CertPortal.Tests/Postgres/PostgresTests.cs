using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Postgres;

/// <summary>The service on PostgreSQL (Npgsql) instead of SQLite: the deployment database.</summary>
public class PostgresApp : CertPortalApp
{
    public PostgresServer Server { get; } = new();
    private readonly string _database = "certportal_" + Guid.NewGuid().ToString("N")[..8];

    /// <summary>For a second node (<see cref="CertPortalNode"/>) on the same database.</summary>
    public string ConnectionString => Server.ConnectionString(_database);

    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Database:Provider"] = "Postgres",
        // Tests place holds, which the BR allow only for multipurpose (not strict) certificates.
        ["Issuance:PolicyOids:0"] = CertPortal.Authority.Oids.PolicyMailboxValidatedMultipurpose,
        ["Database:ConnectionString"] = Server.ConnectionString(_database),
    };

    public override async Task InitializeAsync()
    {
        await Server.InitializeAsync();
        await base.InitializeAsync();
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await Server.DisposeAsync();
    }
}

public sealed class PostgresTests(PostgresApp app) : IClassFixture<PostgresApp>
{
    private static string NewMailbox(string p) => $"{p}.{Guid.NewGuid().ToString("N")[..8]}@example.test";

    [Fact]
    public async Task Inputs_postgresql_cannot_compare_and_pages_past_the_end_get_a_4xx_or_an_empty_page()
    {
        // PostgreSQL text never holds 0x00: each of these filters was a 500 (and matched nothing on SQLite).
        foreach (var path in new[] { "/api/v1/tokens?email=%00", "/api/v1/audit?target=a%00b", "/api/v1/certificates?email=%00",
                     "/api/v1/blocked-keys?spkiSha256=%00", "/api/v1/notifications?recipient=%00" })
            await Http.AssertProblem(await app.Admin.GetAsync(path), HttpStatusCode.BadRequest);

        // (page - 1) * pageSize wrapped to a negative OFFSET, which PostgreSQL refuses.
        var certificates = await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/certificates?page=10737420&pageSize=200", Http.Json);
        Assert.Empty(certificates.GetProperty("items").EnumerateArray());
        Assert.Empty((await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/audit?page=4294969&pageSize=500", Http.Json)).EnumerateArray());
        var notifications = await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/notifications?page=4294969&pageSize=500", Http.Json);
        Assert.Empty(notifications.GetProperty("notifications").EnumerateArray());

        // A NUL in a console form field, the body chunked (no Content-Length): the account look-up was a 500.
        using (var handler = new HttpClientHandler { CookieContainer = new CookieContainer(), AllowAutoRedirect = false })
        using (var http = new HttpClient(handler) { BaseAddress = new Uri(app.BaseUrl) })
        {
            var form = new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["Name"] = "al\0ice", ["Password"] = "not the password 123",
                ["__RequestVerificationToken"] = await ConsoleSignIn.AntiforgeryTokenAsync(http, "/account/login"),
            });
            using var post = new HttpRequestMessage(HttpMethod.Post, "/account/login") { Content = form };
            post.Headers.TransferEncodingChunked = true;
            var answer = await http.SendAsync(post);
            Assert.True(answer.StatusCode == HttpStatusCode.BadRequest, await answer.Content.ReadAsStringAsync());
        }

        // A console sign-in name cut to 64 characters for the throttle through the middle of a surrogate pair.
        var (status, _, session) = await ConsoleSignIn.PostAsync(app.BaseUrl, new string('a', 63) + "😀", "not the password 123");
        Assert.True((int)status < 500, $"sign-in answered {(int)status}");
        Assert.False(session);
    }

    [Fact]
    public async Task Migrations_create_the_schema_on_postgresql_and_the_service_uses_it()
    {
        using var scope = app.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.Equal("Npgsql.EntityFrameworkCore.PostgreSQL", db.Database.ProviderName);
        Assert.Empty(await db.Database.GetPendingMigrationsAsync());
        Assert.True(await db.Crls.AnyAsync(), "the first CRLs were signed and stored");
        Assert.Equal(HttpStatusCode.OK, (await app.Client.GetAsync("/healthz")).StatusCode);
    }

    [Fact]
    public async Task A_mailbox_s_certificates_are_read_through_the_index_on_its_lower_case()
    {
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var definition = await db.Database.SqlQueryRaw<string>(
            "SELECT indexdef AS \"Value\" FROM pg_indexes WHERE indexname = 'IX_Certificates_EmailLower'").SingleAsync();
        Assert.Contains("(lower((\"Email\")::text))", definition, StringComparison.Ordinal);
        // The look-up's cache miss as EF Core sends it can use the index (with seq scans priced out: a test table is small).
        await db.Database.OpenConnectionAsync();
        await using (var off = db.Database.GetDbConnection().CreateCommand())
        {
            off.CommandText = "SET enable_seqscan = off";
            await off.ExecuteNonQueryAsync();
        }
        await using var explain = CertPortal.Gal.RecipientCache.ValidOf(db, "nobody@example.test", DateTimeOffset.UtcNow).CreateDbCommand();
        explain.CommandText = "EXPLAIN " + explain.CommandText;
        var plan = new List<string>();
        await using (var reader = await explain.ExecuteReaderAsync())
            while (await reader.ReadAsync()) plan.Add(reader.GetString(0));
        Assert.Contains(plan, l => l.Contains("IX_Certificates_EmailLower", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_token_read_runs_on_its_own_data_source_and_sees_tokens_created_spent_and_revoked_after_it_opened()
    {
        var readers = app.Service<PostgresReadConnections>();
        var first = await app.CreateTokenAsync(NewMailbox("read"), "signing");
        Assert.NotNull((await FindTokenAsync(first.Token)).Token);
        var reads = readers.Reads;

        // A token created after the data source's connection was opened, then spent by an enrollment, then another one revoked.
        var second = await app.CreateTokenAsync(NewMailbox("read"), "encryption");
        var found = await FindTokenAsync(second.Token);
        Assert.Equal(second.Id, found.Token?.Id);
        Assert.Null(found.Token!.UsedAt);
        var csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(second.Email);
        await Http.EnsureStatus(await app.PostEnrollmentAsync(second.Token, csr), HttpStatusCode.Created);
        Assert.NotNull((await FindTokenAsync(second.Token)).Token!.UsedAt);
        await Http.EnsureStatus(await app.Admin.DeleteAsync($"/api/v1/tokens/{first.Id}"), HttpStatusCode.OK);
        Assert.NotNull((await FindTokenAsync(first.Token)).Token!.RevokedAt);
        // Unknown, of a token's shape (anything else is refused without a read).
        Assert.Null((await FindTokenAsync(first.Token[..^1] + (first.Token[^1] == 'A' ? 'B' : 'A'))).Token);

        // Every read (four here, one in the enrollment) went through the data source, none through EF Core's context.
        Assert.Equal(5, readers.Reads - reads);
    }

    private async Task<(EnrollmentToken? Token, KeyGenerationPolicy? Stored)> FindTokenAsync(string secret)
    {
        await using var scope = app.Services.CreateAsyncScope();
        return await scope.ServiceProvider.GetRequiredService<CertPortal.Enrollment.EnrollmentTokens>()
            .FindWithKeyGenerationAsync(secret, CancellationToken.None);
    }

    [Fact]
    public async Task Issue_look_up_revoke_hold_and_release_on_postgresql()
    {
        var email = NewMailbox("pg");
        var (cert, _) = await app.IssueAsync(email, "encryption", "RSA-2048");
        var found = await app.Client.GetFromJsonAsync<JsonElement>($"/api/v1/directory/{email}/certificates?usage=encryption");
        Assert.Equal(cert.SerialNumber, found.GetProperty("certificates")[0].GetProperty("serialNumber").GetString());

        Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(cert.SerialNumber, "certificateHold")).StatusCode);
        Assert.Equal("onHold", (await app.GetCertificateAsync(cert.SerialNumber)).Status);
        await Http.AssertProblem(await app.Client.GetAsync($"/api/v1/directory/{email}/certificates?usage=encryption"), HttpStatusCode.NotFound);
        Assert.Equal(HttpStatusCode.OK, (await app.Admin.PostAsync($"/api/v1/certificates/{cert.SerialNumber}/release", null)).StatusCode);
        Assert.Equal("valid", (await app.GetCertificateAsync(cert.SerialNumber)).Status);

        Assert.Equal(HttpStatusCode.OK, (await app.RevokeAsync(cert.SerialNumber, "keyCompromise")).StatusCode);
        using var dir = new ToolDir("pg-crl");
        var crl = dir.Write("issuing.crl", await app.Client.GetByteArrayAsync("/crl/issuing.crl"));
        Assert.Contains($"Serial Number: {cert.SerialNumber}",
            Tool.Run("openssl", ["crl", "-inform", "DER", "-in", crl, "-noout", "-text"]).EnsureSuccess().Stdout);
    }

    [Fact]
    public async Task Twenty_concurrent_enrollments_with_one_token_give_exactly_one_certificate_on_postgresql()
    {
        var email = NewMailbox("race");
        var token = await app.CreateTokenAsync(email, "signing");
        var csrs = Enumerable.Range(0, 20).Select(_ => SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email)).ToList();
        var responses = await Task.WhenAll(csrs.Select(csr => app.PostEnrollmentAsync(token.Token, csr)));
        Assert.Single(responses, r => r.StatusCode == HttpStatusCode.Created);
        Assert.All(responses.Where(r => r.StatusCode != HttpStatusCode.Created), r => Assert.Equal(HttpStatusCode.Forbidden, r.StatusCode));
        using var scope = app.Services.CreateScope();
        Assert.Equal(1, await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().Certificates.CountAsync(c => c.Email == email));
    }

    [Fact]
    public async Task A_crl_signed_with_the_time_read_before_the_previous_crl_still_gets_a_later_this_update_on_postgresql()
    {
        // A signer reads the clock, then waits for the CRL lock while another node signs in that same second, and
        // holds the lock only once the clock has passed that second (seen in ThreeNodeClusterTests: CRLs 2 and 3 with
        // one thisUpdate). Its CRL must still be dated after the other's.
        const string issuing = CertPortal.Authority.CertificateAuthority.IssuingName;
        using var scope = app.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var signer = scope.ServiceProvider.GetRequiredService<CertPortal.Revocation.CrlSigner>();
        var readBefore = TimeProvider.System.GetUtcNow();
        CertPortal.Data.CrlRecord other, mine;
        await using (var tx = await db.Database.BeginTransactionAsync())
        {
            other = await signer.SignAsync(db, issuing, TimeProvider.System.GetUtcNow(), "other node", CancellationToken.None);
            await db.SaveChangesAsync();
            await tx.CommitAsync();
        }
        while (CertPortal.Revocation.CrlSigner.WholeSeconds(TimeProvider.System.GetUtcNow()) <= other.ThisUpdate) await Task.Delay(50);
        await using (var tx = await db.Database.BeginTransactionAsync())
        {
            mine = await signer.SignAsync(db, issuing, readBefore, "this node", CancellationToken.None);
            await db.SaveChangesAsync();
            await tx.CommitAsync();
        }
        Assert.Equal(other.Number + 1, mine.Number);
        Assert.True(mine.ThisUpdate > other.ThisUpdate, $"CRL {mine.Number} thisUpdate {mine.ThisUpdate:O}, the previous one's {other.ThisUpdate:O}");
        Assert.True(mine.ThisUpdate <= TimeProvider.System.GetUtcNow());
    }

    [Fact]
    public async Task Crl_numbers_strictly_increase_under_concurrent_revocations_on_postgresql()
    {
        var serials = new List<string>();
        for (var i = 0; i < 8; i++) serials.Add((await app.IssueAsync(NewMailbox("crl"), "signing")).Cert.SerialNumber);
        var results = await Task.WhenAll(serials.Select(s => app.RevokeAsync(s, "superseded")));
        Assert.All(results, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        using var scope = app.Services.CreateScope();
        var numbers = await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().Crls
            .Where(c => c.Authority == CertPortal.Authority.CertificateAuthority.IssuingName).Select(c => c.Number).ToListAsync();
        Assert.Equal(numbers.Count, numbers.Distinct().Count());
        using var dir = new ToolDir("pg-crl2");
        var text = Tool.Run("openssl", ["crl", "-inform", "DER", "-in", dir.Write("i.crl", await app.Client.GetByteArrayAsync("/crl/issuing.crl")), "-noout", "-text"])
            .EnsureSuccess().Stdout;
        Assert.All(serials, s => Assert.Contains($"Serial Number: {s}", text));
    }

    [Fact]
    public Task A_release_racing_a_permanent_revocation_never_brings_the_certificate_back_on_postgresql() =>
        CertPortal.Tests.Api.RevocationRaces.A_release_racing_a_permanent_revocation_never_brings_the_certificate_back(app, "pg.race");

    [Fact]
    public async Task Restart_keeps_everything_on_postgresql()
    {
        var (cert, _) = await app.IssueAsync(NewMailbox("restart"), "dual");
        var ca = await app.Client.GetByteArrayAsync("/ca/issuing.crt");
        await app.StopAsync();
        app.Start();
        Assert.Equal(ca, await app.Client.GetByteArrayAsync("/ca/issuing.crt"));
        Assert.Equal("valid", (await app.GetCertificateAsync(cert.SerialNumber)).Status);
    }
}
