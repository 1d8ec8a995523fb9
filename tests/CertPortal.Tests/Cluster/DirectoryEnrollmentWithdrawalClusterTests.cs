using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Gal;
using CertPortal.Tests.Infrastructure;
using Npgsql;

namespace CertPortal.Tests.Cluster;

/// <summary>Withdrawals with two nodes on one PostgreSQL database, one slapd (its service account limited to
/// <see cref="Limit"/> entries per paged search, OpenLDAP's size.prtotal) and one SMTP server. A person who left loses their
/// link once, with one audit record, whichever nodes run and however many at once; a listing cut short takes nobody's link;
/// a person who comes back is invited again. Until now withdrawals were tested on SQLite only, where one process holds the
/// run lock and writers take turns.</summary>
public sealed class DirectoryEnrollmentWithdrawalClusterTests(PostgresServer postgres) : IClassFixture<PostgresServer>, IAsyncLifetime
{
    private const int Limit = 6;
    private readonly Slapd _ldap = Slapd.WithPagedResultsTotal(Limit);
    private readonly SmtpServer _smtp = new();
    private readonly string _run = Guid.NewGuid().ToString("N")[..6];
    private SchedulerlessNode _a = null!;
    private SchedulerlessNode _b = null!;
    private string _connectionString = "";

    public async Task InitializeAsync()
    {
        await Task.WhenAll(_ldap.InitializeAsync(), _smtp.InitializeAsync());
        _connectionString = postgres.ConnectionString("dirwd_" + Guid.NewGuid().ToString("N")[..8]);
        var settings = SchedulerlessNode.DirectoryEnrollmentSettings(_smtp, _ldap, _connectionString);
        // The account the limit applies to (the rootdn is never limited).
        settings["Directory:BindDn"] = Slapd.ServiceDn;
        settings["Directory:BindPassword"] = Slapd.ServicePassword;
        _a = new SchedulerlessNode(settings);
        _b = new SchedulerlessNode(settings);
        await _a.InitializeAsync();
        await _b.InitializeAsync();
    }

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
        await _smtp.DisposeAsync();
        await _ldap.DisposeAsync();
    }

    private string Mail(string who) => $"{who}.{_run}@example.com";

    [Fact]
    public async Task A_person_who_left_loses_the_link_once_on_either_node_a_cut_listing_takes_none_and_one_who_returns_is_invited_again()
    {
        _ldap.Modify(string.Concat(new[] { "stays", "leaves", "later" }.Select(w => DirectoryEnrollmentWithdrawalTests.Entry(_run, w, Mail(w)))), add: true);
        var first = await RunAsync(_a);
        Assert.Equal([Mail("later"), Mail("leaves"), Mail("stays")], DirectoryEnrollmentWithdrawalTests.Ours(first, "invited", _run).Order());
        var leavesLink = await LinkMailedToAsync(Mail("leaves"));
        var leavesToken = (await TokensAsync(Mail("leaves"))).Single().GetProperty("id").GetGuid();

        // One leaves. Both nodes, each asked by an administrator and by its scheduler, all at once: one run takes the lock at a
        // time (the others are refused or find it taken), and between them the link is withdrawn once.
        _ldap.Modify($"dn: uid=leaves-{_run},{Slapd.PeopleDn}\nchangetype: delete\n");
        var asked = new[] { _a.Admin.PostAsJsonAsync("/api/v1/directory/enrollment-runs", new { dryRun = false }),
            _b.Admin.PostAsJsonAsync("/api/v1/directory/enrollment-runs", new { dryRun = false }) };
        var scheduled = new[] { ScheduledDirectoryEnrollmentTests.RunIfDueAsync(_a), ScheduledDirectoryEnrollmentTests.RunIfDueAsync(_b) };
        await Task.WhenAll(Task.WhenAll(asked), Task.WhenAll(scheduled));
        foreach (var response in asked.Select(t => t.Result))
            Assert.True(response.StatusCode is HttpStatusCode.OK or HttpStatusCode.Conflict, $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        var ran = asked.Count(t => t.Result.StatusCode == HttpStatusCode.OK) + scheduled.Count(t => t.Result is not null);
        Assert.InRange(ran, 1, 4);
        // Back to back, once on each node: nothing left to withdraw.
        foreach (var node in new[] { _b, _a })
        {
            var again = await RunAsync(node);
            Assert.Equal(0, again.GetProperty("withdrawn").GetInt32());
            Assert.Empty(DirectoryEnrollmentWithdrawalTests.Ours(again, "invited", _run));
        }

        Assert.Equal("revoked", await StatusAsync(Mail("leaves")));
        Assert.Equal("pending", await StatusAsync(Mail("stays")));
        Assert.Equal("pending", await StatusAsync(Mail("later")));
        // Every run's record together counts one withdrawal; the audit log holds one revocation, in the job's name.
        var runs = (await _a.Admin.GetFromJsonAsync<JsonElement[]>("/api/v1/directory/enrollment-runs", Http.Json))!;
        Assert.Equal(1, runs.Sum(r => r.GetProperty("withdrawn").GetInt32()));
        Assert.All(runs, r => Assert.Equal(JsonValueKind.Null, r.GetProperty("error").ValueKind));
        await using var db = new NpgsqlConnection(_connectionString);
        await db.OpenAsync();
        await using (var audit = new NpgsqlCommand("SELECT \"Actor\" FROM \"AuditEvents\" WHERE \"Action\" = 'token.revoked' AND \"Target\" = @target", db))
        {
            audit.Parameters.AddWithValue("target", $"token:{leavesToken}");
            var actors = new List<string>();
            await using var rows = await audit.ExecuteReaderAsync();
            while (await rows.ReadAsync()) actors.Add(rows.GetString(0));
            Assert.Equal([CertPortal.Auditing.AuditActors.DirectoryEnrollment], actors);
        }
        // What the person who left sees, on either node: the link no longer works.
        var refused = await _b.PostEnrollmentAsync(leavesLink, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(Mail("leaves")));
        Assert.Contains("revoked", (await Http.AssertProblem(refused, HttpStatusCode.Forbidden)).GetProperty("title").GetString());

        // A listing cut short: "later" leaves while the directory holds more people than the account may list. Their link stays,
        // on both nodes, however often they run.
        var filler = Enumerable.Range(0, Limit).Select(i => $"f{i}").ToList();
        _ldap.Modify(string.Concat(filler.Select(w => DirectoryEnrollmentWithdrawalTests.Entry(_run, w, Mail(w)))), add: true);
        _ldap.Modify($"dn: uid=later-{_run},{Slapd.PeopleDn}\nchangetype: delete\n");
        var listedFiller = new List<string>(); // those the cut listings found are invited as usual
        foreach (var node in new[] { _a, _b, _a })
        {
            var cut = await RunAsync(node);
            Assert.Contains("SizeLimitExceeded", cut.GetProperty("listingIncomplete").GetString());
            Assert.Equal(0, cut.GetProperty("withdrawn").GetInt32());
            listedFiller.AddRange(DirectoryEnrollmentWithdrawalTests.Ours(cut, "invited", _run));
        }
        Assert.Equal("pending", await StatusAsync(Mail("later")));
        Assert.NotEmpty(listedFiller);

        // The directory whole again (the filler gone) and the person who left back: one run withdraws the link of the person
        // the cut listings could not tell was gone (and of the filler they invited), and invites the one who came back, with a
        // new link.
        _ldap.Modify(string.Concat(filler.Select(w => $"dn: uid={w}-{_run},{Slapd.PeopleDn}\nchangetype: delete\n\n")));
        _ldap.Modify(DirectoryEnrollmentWithdrawalTests.Entry(_run, "leaves", Mail("leaves")), add: true);
        var whole = await RunAsync(_b);
        Assert.Equal(JsonValueKind.Null, whole.GetProperty("listingIncomplete").ValueKind);
        Assert.Equal(listedFiller.Append(Mail("later")).Order(), DirectoryEnrollmentWithdrawalTests.Ours(whole, "withdrawn", _run).Order());
        Assert.Equal([Mail("leaves")], DirectoryEnrollmentWithdrawalTests.Ours(whole, "invited", _run));
        Assert.Equal(["pending", "revoked"], (await TokensAsync(Mail("leaves"))).Select(t => t.GetProperty("status").GetString()).Order());
        Assert.Equal("revoked", await StatusAsync(Mail("later")));
        var back = await _smtp.WaitForMessagesToAsync(Mail("leaves"), count: 2);
        Assert.Equal(2, back.Select(DirectoryEnrollmentWithdrawalTests.TokenIn).Append(leavesLink).Distinct().Count());
    }

    private static async Task<JsonElement> RunAsync(CertPortalApp node) => await DirectoryEnrollmentTests.RunAsync(node, dryRun: false);

    private Task<List<JsonElement>> TokensAsync(string email) => DirectoryEnrollmentWithdrawalTests.TokensAsync(_a, email);

    private Task<string> StatusAsync(string email) => DirectoryEnrollmentWithdrawalTests.StatusAsync(_a, email);

    private async Task<string> LinkMailedToAsync(string email) =>
        DirectoryEnrollmentWithdrawalTests.TokenIn((await _smtp.WaitForMessagesToAsync(email)).Single());
}
