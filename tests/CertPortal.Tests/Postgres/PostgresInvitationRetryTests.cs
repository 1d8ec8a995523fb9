using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Mail;

namespace CertPortal.Tests.Postgres;

public sealed class PostgresMailApp : PostgresApp
{
    public SmtpServer Smtp { get; } = new();

    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = new Dictionary<string, string?>(base.Settings);
            foreach (var (k, v) in MailApp.MailSettings(Smtp.Port)) settings[k] = v;
            return settings;
        }
    }

    public override async Task InitializeAsync()
    {
        await Smtp.InitializeAsync();
        await base.InitializeAsync();
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await Smtp.DisposeAsync();
    }
}

/// <summary>On PostgreSQL requests run at once on their own connections, as they do on several nodes: retries of a bulk
/// invitation sent with one Idempotency-Key while the first attempt runs must still invite each person once.</summary>
public sealed class PostgresInvitationRetryTests(PostgresMailApp app) : IClassFixture<PostgresMailApp>
{
    [Fact]
    public async Task Retries_sent_at_once_with_one_idempotency_key_invite_each_person_once_and_answer_alike()
    {
        var id = Guid.NewGuid().ToString("N")[..8];
        var emails = Enumerable.Range(1, 10).Select(i => $"pgretry{i}.{id}@example.test").ToList();
        var list = new { invitations = emails.Select(e => new { email = e, displayName = "Retry Person" }).ToArray(), profile = "signing" };
        var key = Guid.NewGuid().ToString();
        Task<HttpResponseMessage> Send() => InvitationTests.SendListAsync(app.Admin, list, key);

        var responses = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Send()));
        Assert.All(responses, r => Assert.True(r.StatusCode is HttpStatusCode.OK or HttpStatusCode.Conflict, $"{(int)r.StatusCode}"));
        var done = await Send();
        await Http.EnsureStatus(done, HttpStatusCode.OK);
        var rows = (await done.Content.ReadFromJsonAsync<JsonElement>(Http.Json)).GetProperty("results").EnumerateArray().ToList();
        Assert.All(rows, r => Assert.Equal("invited", r.GetProperty("status").GetString()));
        foreach (var (email, row) in emails.Zip(rows))
        {
            var tokens = await app.Admin.GetFromJsonAsync<JsonElement[]>($"/api/v1/tokens?email={email}", Http.Json) ?? [];
            Assert.Equal(row.GetProperty("tokenId").GetGuid(), Assert.Single(tokens).GetProperty("id").GetGuid());
            Assert.True(row.GetProperty("notificationId").GetInt64() > 0);
        }
    }
}
