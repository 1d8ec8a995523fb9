using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Escrow;
using CertPortal.Tests.Escrow;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.FastPath;

/// <summary>Server-generated keys: the same requestId (and password) collects the same PKCS#12 once more;
/// anything else with a spent token is refused, and the retry copy is sealed and erased after its window.</summary>
public sealed class ServerKeyRetryTests(EscrowApp app) : IClassFixture<EscrowApp>, IAsyncLifetime
{
    public async Task InitializeAsync()
    {
        Tool.Require("openssl", "openssl");
        for (var i = 0; i < 3; i++) await app.AddAgentAsync("RSA-2048");
    }

    public Task DisposeAsync() => Task.CompletedTask;

    private Task<HttpResponseMessage> PostAsync(string token, string? requestId, string password = EscrowApp.Pkcs12Password) =>
        PostServerKeyEnrollmentAsync(app, token, requestId, password);

    [Fact]
    public async Task A_display_name_beyond_the_basic_multilingual_plane_gets_its_pkcs12()
    {
        // The PKCS#12 friendlyName is a BMPString: an emoji or 𠮷 (U+20BB7) in the display name made the file fail to build (500).
        var token = await app.CreateTokenAsync($"skr.emoji.{Guid.NewGuid().ToString("N")[..8]}@example.test", "encryption", displayName: "𠮷田 Carol 😀");
        var r = await PostAsync(token.Token, Guid.NewGuid().ToString());
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        var pfx = Convert.FromBase64String((await r.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pkcs12").GetString()!);
        Assert.True(Pkcs12Files.PasswordOpens(pfx, EscrowApp.Pkcs12Password));
    }

    internal static Task<HttpResponseMessage> PostServerKeyEnrollmentAsync(CertPortalApp app, string token, string? requestId,
        string password = EscrowApp.Pkcs12Password) =>
        app.Client.PostAsJsonAsync("/api/v1/enrollments", new { token, keyAlgorithm = "EC-P256", pkcs12Password = password, requestId });

    [Fact]
    public async Task The_same_request_id_collects_the_same_pkcs12_and_nothing_else_does()
    {
        var email = $"skr.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var token = await app.CreateTokenAsync(email, "encryption");
        var requestId = Guid.NewGuid().ToString();
        var first = await PostAsync(token.Token, requestId);
        await Http.EnsureStatus(first, HttpStatusCode.Created);
        var issued = await first.Content.ReadFromJsonAsync<JsonElement>();

        var again = await PostAsync(token.Token, requestId);
        await Http.EnsureStatus(again, HttpStatusCode.OK);
        var collected = await again.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(issued.GetProperty("serialNumber").GetString(), collected.GetProperty("serialNumber").GetString());
        Assert.Equal(issued.GetProperty("pkcs12").GetString(), collected.GetProperty("pkcs12").GetString());
        Assert.True(collected.GetProperty("keyEscrowed").GetBoolean());

        await Http.AssertProblem(await PostAsync(token.Token, Guid.NewGuid().ToString()), HttpStatusCode.Forbidden);
        await Http.AssertProblem(await PostAsync(token.Token, requestId, "another password 123"), HttpStatusCode.Forbidden);
        await Http.AssertProblem(await PostAsync(token.Token, null), HttpStatusCode.Forbidden);
        await Http.AssertProblem(await PostAsync(token.Token, "short"), HttpStatusCode.UnprocessableEntity);

        // Stored sealed (not the PKCS#12 itself), and erased once the retry window has passed.
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var package = (await db.EnrollmentTokens.SingleAsync(t => t.Id == token.Id)).RetryPackage!;
        var pfx = Convert.FromBase64String(issued.GetProperty("pkcs12").GetString()!);
        Assert.False(package.AsSpan().IndexOf(pfx.AsSpan(0, 64)) >= 0, "the PKCS#12 is not stored in the clear");
        Assert.Equal(pfx, RetryPackage.Open(package, requestId, token.Id));
        Assert.Null(RetryPackage.Open(package, requestId, Guid.NewGuid()));

        Assert.True(await ServerKeyEnrollment.PurgeRetryPackagesAsync(db, DateTimeOffset.UtcNow + ServerKeyEnrollment.RetryWindow + TimeSpan.FromMinutes(1), default) >= 1);
        db.ChangeTracker.Clear();
        Assert.Null((await db.EnrollmentTokens.SingleAsync(t => t.Id == token.Id)).RetryPackage);
        await Http.AssertProblem(await PostAsync(token.Token, requestId), HttpStatusCode.Forbidden);
    }

    /// <summary>The requestId names one request: repeated with another format or key type (or password), it is refused as any
    /// other request for the spent token is (403), saying so, where it got the first request's file in the first format and with
    /// the first key type. The first request repeated, in the compatibility format, still collects its file.</summary>
    [Fact]
    public async Task The_same_request_id_with_another_format_or_key_type_is_refused_as_reused()
    {
        var token = await app.CreateTokenAsync($"skr.reused.{Guid.NewGuid().ToString("N")[..8]}@example.test", "encryption");
        var requestId = Guid.NewGuid().ToString();
        object Body(string keyAlgorithm, string format, string password = EscrowApp.Pkcs12Password) =>
            new { token = token.Token, keyAlgorithm, pkcs12Password = password, pkcs12Format = format, requestId };
        var first = await app.Client.PostAsJsonAsync("/api/v1/enrollments", Body("EC-P256", "compatible-3des"));
        await Http.EnsureStatus(first, HttpStatusCode.Created);
        var pkcs12 = (await first.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pkcs12").GetString();

        foreach (var (body, firstAsked) in new[]
                 {
                     (Body("EC-P256", "aes256"), "pkcs12Format compatible-3des"),
                     (Body("RSA-2048", "compatible-3des"), "keyAlgorithm EC-P256"),
                     (Body("EC-P256", "compatible-3des", "another password 123"), "another pkcs12Password"),
                 })
        {
            var problem = await Http.AssertProblem(await app.Client.PostAsJsonAsync("/api/v1/enrollments", body), HttpStatusCode.Forbidden);
            Assert.Equal("requestId reused.", problem.GetProperty("title").GetString());
            Assert.Contains(firstAsked, problem.GetProperty("detail").GetString());
        }
        var again = await app.Client.PostAsJsonAsync("/api/v1/enrollments", Body("EC-P256", "compatible-3des"));
        await Http.EnsureStatus(again, HttpStatusCode.OK);
        Assert.Equal(pkcs12, (await again.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pkcs12").GetString());
    }

    [Fact]
    public async Task A_token_that_expires_soon_after_it_was_spent_keeps_its_retry_copy_for_the_whole_window()
    {
        // The window is counted from the spend: a token used a minute before it expired still lets a lost answer be collected.
        var token = await app.CreateTokenAsync($"skr.late.{Guid.NewGuid().ToString("N")[..8]}@example.test", "encryption", validHours: 1);
        var requestId = Guid.NewGuid().ToString();
        var first = await PostAsync(token.Token, requestId);
        await Http.EnsureStatus(first, HttpStatusCode.Created);
        var issued = await first.Content.ReadFromJsonAsync<JsonElement>();

        await using (var scope = app.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            await ServerKeyEnrollment.PurgeRetryPackagesAsync(db, DateTimeOffset.UtcNow + TimeSpan.FromHours(1) + TimeSpan.FromMinutes(1), default);
            Assert.NotNull((await db.EnrollmentTokens.AsNoTracking().SingleAsync(t => t.Id == token.Id)).RetryPackage);
        }
        var again = await PostAsync(token.Token, requestId);
        await Http.EnsureStatus(again, HttpStatusCode.OK);
        Assert.Equal(issued.GetProperty("pkcs12").GetString(), (await again.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("pkcs12").GetString());
    }
}

/// <summary>Escrow with an ECDSA issuing CA: a CSR enrollment then claims its token in the group writer itself
/// (<c>EnrollmentService.ClaimAndIssueAsync</c>), which RSA issuers never do.</summary>
public sealed class EcEscrowApp : EscrowApp
{
    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?>(base.Settings)
    {
        ["Ca:IssuingKeyAlgorithm"] = "EC-P256",
        ["Ca:RootKeyAlgorithm"] = "EC-P384",
    };
}

public sealed class TokenGiveBackTests(EcEscrowApp app) : IClassFixture<EcEscrowApp>, IAsyncLifetime
{
    public async Task InitializeAsync()
    {
        Tool.Require("openssl", "openssl");
        for (var i = 0; i < 3; i++) await app.AddAgentAsync("RSA-2048");
    }

    public Task DisposeAsync() => Task.CompletedTask;


    [Fact]
    public async Task A_server_key_enrollment_is_not_refused_because_csr_requests_for_its_token_were_claimed_and_given_back_beside_it()
    {
        // With an ECDSA issuer a CSR enrollment claims its token in the writer's group and gives it back when the CSR names another
        // mailbox. A server-key enrollment of the same token whose spend ran in the same group, after that claim and before
        // the give-back, was refused as "already used" though the token stayed unused.
        for (var round = 0; round < 5; round++)
        {
            var email = $"skr.race{round}.{Guid.NewGuid().ToString("N")[..8]}@example.test";
            var token = await app.CreateTokenAsync(email, "encryption");
            var otherMailbox = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem("someone.else@example.test");
            using var stop = new CancellationTokenSource();
            var refused = Enumerable.Range(0, 6).Select(async _ =>
            {
                var statuses = new HashSet<HttpStatusCode>();
                while (!stop.IsCancellationRequested)
                    statuses.Add((await app.PostEnrollmentAsync(token.Token, otherMailbox)).StatusCode);
                return statuses;
            }).ToList();
            await Task.Delay(50);
            var serverKey = await ServerKeyRetryTests.PostServerKeyEnrollmentAsync(app, token.Token, Guid.NewGuid().ToString());
            await stop.CancelAsync();
            var statuses = (await Task.WhenAll(refused)).SelectMany(s => s).ToHashSet();
            Assert.Equal(HttpStatusCode.Created, serverKey.StatusCode);
            Assert.DoesNotContain(statuses, s => (int)s < 400 || (int)s >= 500);
        }
    }
}
