using System.Net;
using System.Net.Http.Json;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using static CertPortal.Tests.Infrastructure.WriterGroups;

namespace CertPortal.Tests.FastPath;

/// <summary>The service on SQLite with an ECDSA issuing CA: enrollments claim their token in the group writer.</summary>
public sealed class EcSqliteApp : CertPortalApp
{
    protected override IDictionary<string, string?> Settings => new Dictionary<string, string?> { ["Ca:IssuingKeyAlgorithm"] = "EC-P256" };
}

/// <summary>With an ECDSA issuing key an enrollment reads and spends its token in one statement in the group writer
/// (<see cref="DirectSql.ClaimTokenAsync"/>) instead of reading it first, and every outcome is the one the token read gave: run on
/// each database (<see cref="SqliteTokenClaimTests"/>, <see cref="Postgres.PostgresTokenClaimTests"/>), which add what their own
/// writer must show.</summary>
public abstract class TokenClaimTests<TApp>(TApp app) where TApp : CertPortalApp
{
    protected TApp App => app;

    /// <summary>Token reads made outside the group writer so far (the read-first path's).</summary>
    protected abstract long TokenReads { get; }

    [Fact]
    public async Task What_cannot_be_a_token_is_refused_without_a_claim_or_a_token_read()
    {
        var writer = app.Service<GroupCommitWriter>();
        var email = $"junk.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var real = await app.CreateTokenAsync(email, "signing");
        var secret = real.Token[EnrollmentTokens.Prefix.Length..];
        var csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email);
        var (units, reads) = (writer.UnitsCommitted, TokenReads);
        // Another prefix, one character short or long, a character outside base64url, no prefix, a guess of the old test's shape.
        foreach (var junk in new[] { "cpx_" + secret, real.Token[..^1], real.Token + "A", real.Token[..^1] + "=", secret + "abcd", "cpt_unknown-token-value" })
            Assert.Equal(EnrollmentTokens.Unknown.Title, (await Http.AssertProblem(await app.PostEnrollmentAsync(junk, csr), HttpStatusCode.Forbidden))
                .GetProperty("title").GetString());
        Assert.Equal(units, writer.UnitsCommitted);
        Assert.Equal(reads, TokenReads);
        // A token of the right shape that does not exist is claimed (and, the claim taking nothing, read): it might have been issued.
        var unknown = await Http.AssertProblem(await app.PostEnrollmentAsync(real.Token[..^1] + (real.Token[^1] == 'A' ? 'B' : 'A'), csr),
            HttpStatusCode.Forbidden);
        Assert.Equal(EnrollmentTokens.Unknown.Title, unknown.GetProperty("title").GetString());
        Assert.Equal(units + 1, writer.UnitsCommitted);
        Assert.Equal(reads + 1, TokenReads);
        // The real one, with surrounding spaces as pasted, is issued.
        Assert.Equal(HttpStatusCode.Created, (await app.PostEnrollmentAsync($"  {real.Token} ", csr)).StatusCode);
    }

    [Fact]
    public async Task Refusals_in_a_group_fail_alone_and_a_token_refused_after_its_claim_is_given_back()
    {
        var marker = Guid.NewGuid().ToString("N")[..8];
        // A key blocked as compromised: certified once, then revoked for keyCompromise.
        var blockedEmail = $"blocked.{marker}@example.test";
        var blockedKey = SubscriberKeyPair.Generate("EC-P256");
        var first = await app.EnrollAsync((await app.CreateTokenAsync(blockedEmail, "signing")).Token, blockedKey.CreateCsrPem(blockedEmail));
        await Http.EnsureStatus(await app.RevokeAsync(first.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
        var blockedToken = await app.CreateTokenAsync(blockedEmail, "signing");
        // A token already spent, asked again with the same key (a client that lost the answer) and with another.
        var spentEmail = $"spent.{marker}@example.test";
        var spentKey = SubscriberKeyPair.Generate("EC-P256");
        var spentToken = await app.CreateTokenAsync(spentEmail, "signing");
        var spentCert = await app.EnrollAsync(spentToken.Token, spentKey.CreateCsrPem(spentEmail));
        var otherEmail = $"other.{marker}@example.test";
        var otherToken = await app.CreateTokenAsync(otherEmail, "signing");
        var emails = Enumerable.Range(0, 4).Select(i => $"group{i}.{marker}@example.test").ToList();
        var tokens = await Task.WhenAll(emails.Select(e => app.CreateTokenAsync(e, "signing")));

        // Queued in this order (each request claims as it is made): the first token's first claim before its second.
        var (outcomes, _) = await EnrollInOneGroupAsync(app.Services,
        [
            .. tokens.Select((t, i) => (t.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(emails[i]))),
            (blockedToken.Token, blockedKey.CreateCsrPem(blockedEmail)),
            // The first token a second time, with another key: claimed in the same group, after the first claim.
            (tokens[0].Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(emails[0])),
            (spentToken.Token, spentKey.CreateCsrPem(spentEmail)),
            (spentToken.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(spentEmail)),
            // Claimed, then refused: the CSR names a mailbox that is not the token's.
            (otherToken.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(emails[1])),
        ]);
        var issued = outcomes[..4];
        Assert.All(issued, e => Assert.True(e.Succeeded, e.Failure?.Detail));
        Assert.Equal(4, issued.Select(e => e.Value!.SerialNumber).Distinct().Count());
        Assert.Equal("Key blocked as compromised.", outcomes[4].Failure?.Title);
        Assert.Equal(FailureKind.Forbidden, outcomes[5].Failure?.Kind);
        Assert.True(outcomes[6].Value is { Collected: true }, outcomes[6].Failure?.Detail);
        Assert.Equal(spentCert.SerialNumber, outcomes[6].Value!.SerialNumber);
        Assert.Equal(EnrollmentTokens.AlreadyUsed.Title, outcomes[7].Failure?.Title);
        Assert.Equal("CSR names another mailbox.", outcomes[8].Failure?.Title);

        await using (var scope = app.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            var given = await db.EnrollmentTokens.SingleAsync(t => t.Id == otherToken.Id);
            Assert.Null(given.UsedAt);
            Assert.Null(given.CertificateSerial);
            Assert.Null((await db.EnrollmentTokens.SingleAsync(t => t.Id == blockedToken.Id)).UsedAt);
            Assert.Equal(0, await db.Certificates.CountAsync(c => c.Email == otherEmail));
            Assert.Equal(1, await db.Certificates.CountAsync(c => c.Email == blockedEmail));
            var spent = await db.EnrollmentTokens.Where(t => t.Email.StartsWith("group") && t.Email.EndsWith($".{marker}@example.test")).ToListAsync();
            Assert.All(spent, t => Assert.Equal(issued[emails.IndexOf(t.Email)].Value!.SerialNumber, t.CertificateSerial));
        }
        // The token given back is spent by its own mailbox's CSR afterwards.
        await app.EnrollAsync(otherToken.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(otherEmail));
    }

    [Fact]
    public async Task A_policy_requiring_server_generated_keys_is_read_with_the_claim_and_the_token_given_back()
    {
        var marker = Guid.NewGuid().ToString("N")[..8];
        var encryption = await app.CreateTokenAsync($"enc.{marker}@example.test", "encryption");
        var signing = await app.CreateTokenAsync($"sig.{marker}@example.test", "signing");
        var before = (await app.Admin.GetFromJsonAsync<System.Text.Json.JsonElement>("/api/v1/escrow/policy")).GetProperty("encryptionKeyGeneration").GetString();
        await Http.EnsureStatus(await app.Admin.PutAsJsonAsync("/api/v1/escrow/policy", new { encryptionKeyGeneration = "Required" }), HttpStatusCode.OK);
        Outcome<EnrollmentResult>[] outcomes;
        try
        {
            (outcomes, _) = await EnrollInOneGroupAsync(app.Services,
            [
                (encryption.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(encryption.Email)),
                (signing.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(signing.Email)),
            ]);
        }
        finally
        {
            await Http.EnsureStatus(await app.Admin.PutAsJsonAsync("/api/v1/escrow/policy", new { encryptionKeyGeneration = before }), HttpStatusCode.OK);
        }
        Assert.Equal("Server-generated key required.", outcomes[0].Failure?.Title);
        Assert.True(outcomes[1].Succeeded, outcomes[1].Failure?.Detail);
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.Null((await db.EnrollmentTokens.SingleAsync(t => t.Id == encryption.Id)).UsedAt);
        Assert.NotNull((await db.EnrollmentTokens.SingleAsync(t => t.Id == signing.Id)).UsedAt);
    }

    [Fact]
    public async Task A_certificate_that_fails_its_lint_after_the_claim_gives_its_token_back_in_the_same_transaction()
    {
        var writer = app.Service<GroupCommitWriter>();
        var options = app.Service<CertPortalOptions>();
        var marker = Guid.NewGuid().ToString("N")[..8];
        var emails = Enumerable.Range(0, 3).Select(i => $"lint{i}.{marker}@example.test").ToList();
        var tokens = await Task.WhenAll(emails.Select(e => app.CreateTokenAsync(e, "signing")));
        var csrs = emails.Select(e => SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(e)).ToList();

        var (started, release, gate) = Gate(writer);
        await started;
        var scopes = new List<AsyncServiceScope>();
        var validityDays = options.Issuance.ValidityDays;
        List<Task<Outcome<EnrollmentResult>>> enrollments;
        Task<Outcome<CreatedToken>> created;
        var commitsBefore = writer.Commits;
        try
        {
            // Longer than the S/MIME BR allow: the linter refuses every certificate of the group, before it is signed.
            options.Issuance.ValidityDays = 900;
            enrollments = tokens.Select((t, i) => app.Services.InNewScope<EnrollmentService>(scopes)
                .EnrollAsync(new EnrollmentRequest(t.Token, csrs[i]), "test", CancellationToken.None)).ToList();
            // A token creation in the same group commits.
            created = app.Services.InNewScope<EnrollmentTokens>(scopes).CreateAsync(new CreateTokenRequest($"created.{marker}@example.test", "Created", "signing", 24), "test",
                CancellationToken.None);
            await WaitUntil(() => writer.Queued == 4);
        }
        finally
        {
            release();
        }
        await gate;
        foreach (var enrollment in enrollments)
            Assert.Contains("validity longer than 825 days", (await Assert.ThrowsAsync<CertificateLintException>(() => enrollment)).Problems);
        options.Issuance.ValidityDays = validityDays;
        Assert.True((await created).Succeeded);
        // Nothing retried: the three gave their tokens back in the group's transaction, which committed.
        Assert.Equal(2, writer.Commits - commitsBefore);
        foreach (var scope in scopes) await scope.DisposeAsync();

        await using (var scope = app.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            var back = await db.EnrollmentTokens.Where(t => t.Email.StartsWith("lint") && t.Email.EndsWith($".{marker}@example.test")).ToListAsync();
            Assert.Equal(3, back.Count);
            Assert.All(back, t => Assert.Null(t.UsedAt));
            Assert.All(back, t => Assert.Null(t.CertificateSerial));
            Assert.Equal(0, await db.Certificates.CountAsync(c => c.Email.EndsWith($".{marker}@example.test")));
            Assert.Equal(1, await db.EnrollmentTokens.CountAsync(t => t.Email == $"created.{marker}@example.test"));
        }
        // The same requests, now within the rules, are issued.
        for (var i = 0; i < 3; i++) await app.EnrollAsync(tokens[i].Token, csrs[i]);
    }

    [Fact]
    public async Task Twenty_concurrent_enrollments_with_one_token_give_one_certificate_and_the_winner_collects_it_again()
    {
        var email = $"race.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var token = await app.CreateTokenAsync(email, "signing");
        var csrs = Enumerable.Range(0, 20).Select(_ => SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email)).ToList();
        var responses = await Task.WhenAll(csrs.Select(csr => app.PostEnrollmentAsync(token.Token, csr)));
        var winner = Assert.Single(responses, r => r.StatusCode == HttpStatusCode.Created);
        Assert.All(responses.Where(r => r != winner), r => Assert.Equal(HttpStatusCode.Forbidden, r.StatusCode));
        var serial = (await winner.Content.ReadFromJsonAsync<EnrollmentResponse>())!.SerialNumber;

        var again = await app.PostEnrollmentAsync(token.Token, csrs[Array.IndexOf(responses, winner)]);
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        Assert.Equal(serial, (await again.Content.ReadFromJsonAsync<EnrollmentResponse>())!.SerialNumber);
        using var scope = app.Services.CreateScope();
        Assert.Equal(1, await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().Certificates.CountAsync(c => c.Email == email));
    }
}

/// <summary>On SQLite the claim runs on the writer's connection, whose page cache its own commits leave warm, and the group commits once.</summary>
public sealed class SqliteTokenClaimTests(EcSqliteApp app) : TokenClaimTests<EcSqliteApp>(app), IClassFixture<EcSqliteApp>
{
    protected override long TokenReads => App.Service<SqliteReadConnections>().Rented;

    [Fact]
    public async Task A_group_of_enrollments_claims_its_tokens_in_the_writer_and_commits_once_without_a_token_read()
    {
        var marker = Guid.NewGuid().ToString("N")[..8];
        var emails = Enumerable.Range(0, 6).Select(i => $"claim{i}.{marker}@example.test").ToList();
        var tokens = await Task.WhenAll(emails.Select(e => App.CreateTokenAsync(e, "signing")));
        var reads = TokenReads;

        var (issued, commits) = await EnrollInOneGroupAsync(App.Services,
            [.. tokens.Select((t, i) => (t.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(emails[i])))]);
        Assert.All(issued, e => Assert.True(e.Succeeded, e.Failure?.Detail));
        Assert.Equal(2, commits); // the gate's group, then one for the six
        Assert.Equal(reads, TokenReads);

        await using var scope = App.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var stored = await db.Certificates.Where(c => c.Email.EndsWith($".{marker}@example.test")).ToListAsync();
        Assert.Equal(issued.Select(e => e.Value!.SerialNumber).Order(), stored.Select(c => c.SerialNumber).Order());
        Assert.All(stored, c => Assert.Equal(tokens[emails.IndexOf(c.Email)].Id, c.TokenId));
        Assert.Equal(6, await db.AuditEvents.CountAsync(a => a.Action == "certificate.issued" && a.Details!.Contains(marker)));
        var spent = await db.EnrollmentTokens.Where(t => t.Email.EndsWith($".{marker}@example.test")).ToListAsync();
        Assert.All(spent, t => Assert.Equal(issued[emails.IndexOf(t.Email)].Value!.SerialNumber, t.CertificateSerial));
        Assert.All(spent, t => Assert.NotNull(t.UsedAt));
    }
}
