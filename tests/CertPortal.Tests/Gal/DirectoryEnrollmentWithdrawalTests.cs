using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Gal;

/// <summary>Links the job mailed are its own to take back. Someone who left the organisation (their entry deleted, or taken out
/// of the group) kept the invitation link in their old mailbox and could still get a certificate with it; and an administrator
/// who revoked a link the job had mailed saw the next run mail the person a new one.</summary>
[Collection(nameof(DirectoryEnrollmentRuns))]
public sealed partial class DirectoryEnrollmentWithdrawalTests(WholeDirectoryEnrollmentApp app) : IClassFixture<WholeDirectoryEnrollmentApp>
{
    [Fact]
    public async Task A_run_withdraws_the_links_it_mailed_to_people_who_left_and_keeps_every_other_link()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        string Mail(string who) => $"{who}.{run}@example.com";
        app.Ldap.Modify(Entry(run, "stays", Mail("stays")) + Entry(run, "leaves", Mail("leaves")) + Entry(run, "renamed", Mail("renamed")), add: true);
        // An administrator's own link for someone the directory never listed: never the job's to take back.
        await Http.EnsureStatus(await app.Admin.PostAsJsonAsync("/api/v1/tokens", new { email = Mail("handmade"), profile = "dual", validHours = 72 }),
            HttpStatusCode.Created);

        var first = await DirectoryEnrollmentTests.RunAsync(app, dryRun: false);
        Assert.Equal([Mail("leaves"), Mail("renamed"), Mail("stays")], Ours(first, "invited", run).Order());
        var link = await LinkMailedToAsync(Mail("leaves"));

        // One leaves; another gets a new primary address and keeps the one invited as an alias.
        app.Ldap.Modify($"dn: uid=leaves-{run},{Slapd.PeopleDn}\nchangetype: delete\n");
        app.Ldap.Modify($"dn: uid=renamed-{run},{Slapd.PeopleDn}\nchangetype: modify\nreplace: mail\nmail: {Mail("renamed-new")}\nmail: {Mail("renamed")}\n");

        var dry = await DirectoryEnrollmentTests.RunAsync(app, dryRun: true);
        Assert.Equal([Mail("leaves")], Ours(dry, "would-withdraw", run));
        Assert.Equal("pending", await StatusAsync(Mail("leaves")));

        var real = await DirectoryEnrollmentTests.RunAsync(app, dryRun: false);
        Assert.Equal([Mail("leaves")], Ours(real, "withdrawn", run));
        // The renamed person holds a live link under an alias: neither withdrawn nor invited again at the new address.
        Assert.Empty(Ours(real, "invited", run));
        Assert.Equal("revoked", await StatusAsync(Mail("leaves")));
        foreach (var kept in new[] { "stays", "renamed", "handmade" }) Assert.Equal("pending", await StatusAsync(Mail(kept)));

        // What the person who left sees: the link in their old mailbox no longer works.
        var refused = await app.PostEnrollmentAsync(link, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(Mail("leaves")));
        Assert.Contains("revoked", (await Http.AssertProblem(refused, HttpStatusCode.Forbidden)).GetProperty("title").GetString());

        // Audited as an administrator's revocation is, in the job's name; the run's record counts it.
        var id = (await TokensAsync(Mail("leaves"))).Single().GetProperty("id").GetGuid();
        await using (var scope = app.Services.CreateAsyncScope())
        {
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            var audit = await db.AuditEvents.AsNoTracking().SingleAsync(a => a.Action == "token.revoked" && a.Target == $"token:{id}");
            Assert.Equal("directory-enrollment", audit.Actor);
        }
        var runs = await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/directory/enrollment-runs", Http.Json);
        Assert.Equal(real.GetProperty("withdrawn").GetInt32(), runs.EnumerateArray()
            .Single(r => r.GetProperty("id").GetInt64() == real.GetProperty("runId").GetInt64()).GetProperty("withdrawn").GetInt32());

        // Back in the directory: the job took the link back, not an administrator, so the person is invited again.
        app.Ldap.Modify(Entry(run, "leaves", Mail("leaves")), add: true);
        var back = await DirectoryEnrollmentTests.RunAsync(app, dryRun: false);
        Assert.Equal([Mail("leaves")], Ours(back, "invited", run));
    }

    [Fact]
    public async Task A_link_of_the_job_that_an_administrator_revoked_keeps_the_job_from_inviting_the_person_again()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        var mail = $"refused.{run}@example.com";
        app.Ldap.Modify(Entry(run, "refused", mail), add: true);
        var first = await DirectoryEnrollmentTests.RunAsync(app, dryRun: false);
        Assert.Equal([mail], Ours(first, "invited", run));
        var id = (await TokensAsync(mail)).Single().GetProperty("id").GetGuid();
        await Http.EnsureStatus(await app.Admin.DeleteAsync($"/api/v1/tokens/{id}"), HttpStatusCode.OK);

        // The administrator's decision stands: not listed, not invited, counted with those holding a link.
        var dry = await DirectoryEnrollmentTests.RunAsync(app, dryRun: true);
        Assert.Empty(Ours(dry, "would-invite", run));
        var next = await DirectoryEnrollmentTests.RunAsync(app, dryRun: false);
        Assert.Empty(Ours(next, "invited", run));
        Assert.Single(await TokensAsync(mail));

        // An administrator may still invite the person by hand.
        await Http.EnsureStatus(await app.Admin.PostAsJsonAsync("/api/v1/tokens", new { email = mail, profile = "dual", send = true }), HttpStatusCode.Created);
        Assert.Equal(2, (await TokensAsync(mail)).Count);
    }

    internal static string Entry(string run, string who, params string[] mails) =>
        string.Create(CultureInfo.InvariantCulture, $"dn: uid={who}-{run},{Slapd.PeopleDn}\nobjectClass: inetOrgPerson\nuid: {who}-{run}\ncn: {who}\nsn: {who}\n")
        + string.Concat(mails.Select(m => $"mail: {m}\n")) + "\n";

    /// <summary>This test's people in the report with <paramref name="status"/> (the fixture's directory holds the other tests' people too).</summary>
    internal static List<string> Ours(JsonElement report, string status, string run) =>
        DirectoryEnrollmentTests.People(report, status).Where(e => e.Contains(run, StringComparison.Ordinal)).ToList();

    private Task<List<JsonElement>> TokensAsync(string email) => TokensAsync(app, email);

    private Task<string> StatusAsync(string email) => StatusAsync(app, email);

    /// <summary>The tokens made for <paramref name="email"/>, as the admin API lists them.</summary>
    internal static async Task<List<JsonElement>> TokensAsync(CertPortalApp node, string email) =>
        [.. await node.Admin.GetFromJsonAsync<JsonElement[]>($"/api/v1/tokens?email={Uri.EscapeDataString(email)}", Http.Json) ?? []];

    /// <summary>The status of the one token made for <paramref name="email"/> (pending, revoked, used, expired).</summary>
    internal static async Task<string> StatusAsync(CertPortalApp node, string email) =>
        (await TokensAsync(node, email)).Single().GetProperty("status").GetString()!;

    private async Task<string> LinkMailedToAsync(string email) => TokenIn((await app.Smtp.WaitForMessagesToAsync(email)).Single());

    /// <summary>The enrollment token in an invitation's link.</summary>
    internal static string TokenIn(MimeKit.MimeMessage invitation) => TokenInLink().Match(invitation.TextBody ?? "").Groups[1].Value;

    [GeneratedRegex(@"/enroll#token=(cpt_[A-Za-z0-9_-]+)")]
    private static partial Regex TokenInLink();
}

/// <summary>A slapd that gives CertPortal's account at most <see cref="Limit"/> entries from a paged search (OpenLDAP's
/// size.prtotal), every person under the people base invited.</summary>
public sealed class PagedLimitDirectoryEnrollmentApp() : DirectoryEnrollmentApp(Slapd.WithPagedResultsTotal(Limit))
{
    public const int Limit = 5;

    protected override string? Group => null;

    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            settings["Directory:BindDn"] = Slapd.ServiceDn;
            settings["Directory:BindPassword"] = Slapd.ServicePassword;
            return settings;
        }
    }
}

/// <summary>Only a listing that is everyone may take links back. OpenLDAP ends a paged search at its size.prtotal limit with
/// result 4 sizeLimitExceeded and no cookie, which read as the last page: everyone after the cut looked gone.</summary>
[Collection(nameof(DirectoryEnrollmentRuns))]
public sealed class DirectoryEnrollmentCutListingTests(PagedLimitDirectoryEnrollmentApp app) : IClassFixture<PagedLimitDirectoryEnrollmentApp>
{
    [Fact]
    public async Task A_listing_cut_short_by_the_paged_results_limit_withdraws_no_link_and_says_so()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        string Mail(string who) => $"{who}.{run}@example.com";
        string[] invited = ["a", "b", "c"];
        app.Ldap.Modify(string.Concat(invited.Select(w => DirectoryEnrollmentWithdrawalTests.Entry(run, w, Mail(w)))), add: true);
        var first = await DirectoryEnrollmentTests.RunAsync(app, dryRun: false);
        Assert.Equal(invited.Select(Mail), DirectoryEnrollmentWithdrawalTests.Ours(first, "invited", run).Order());

        // The same three people, now behind five others: slapd hands out the first five entries (in the order they were added).
        app.Ldap.Modify(string.Concat(invited.Select(w => $"dn: uid={w}-{run},{Slapd.PeopleDn}\nchangetype: delete\n\n")));
        app.Ldap.Modify(string.Concat(Enumerable.Range(0, PagedLimitDirectoryEnrollmentApp.Limit)
            .Select(i => DirectoryEnrollmentWithdrawalTests.Entry(run, $"f{i}", Mail($"f{i}")))), add: true);
        app.Ldap.Modify(string.Concat(invited.Select(w => DirectoryEnrollmentWithdrawalTests.Entry(run, w, Mail(w)))), add: true);

        var cut = await DirectoryEnrollmentTests.RunAsync(app, dryRun: false);
        Assert.Equal(PagedLimitDirectoryEnrollmentApp.Limit, cut.GetProperty("found").GetInt32());
        Assert.Contains("SizeLimitExceeded", cut.GetProperty("listingIncomplete").GetString());
        Assert.Empty(DirectoryEnrollmentWithdrawalTests.Ours(cut, "withdrawn", run));
        Assert.Equal(0, cut.GetProperty("withdrawn").GetInt32());
        foreach (var w in invited)
        {
            var tokens = await app.Admin.GetFromJsonAsync<JsonElement[]>($"/api/v1/tokens?email={Uri.EscapeDataString(Mail(w))}", Http.Json) ?? [];
            Assert.Equal("pending", Assert.Single(tokens).GetProperty("status").GetString());
        }
    }
}

/// <summary>Runs that invite the members of a group (<c>GroupDn</c>) withdraw the links of people taken out of it, though their entries
/// stay in the directory. A group larger than Active Directory's range size (1500 values; it then hands out
/// <c>member;range=0-1499</c>, which withdraws nothing) is read whole from OpenLDAP, which has no ranged retrieval: slapd refuses
/// <c>member;range=…</c> as an attribute description and returns every value in one answer, so the ranged case itself cannot be
/// brought about here.</summary>
[Collection(nameof(DirectoryEnrollmentRuns))]
public sealed class DirectoryEnrollmentGroupWithdrawalTests(DirectoryEnrollmentApp app) : IClassFixture<DirectoryEnrollmentApp>
{
    private const int LargerThanActiveDirectoryRanges = 1600;

    [Fact]
    public async Task A_person_taken_out_of_the_group_loses_the_link_and_a_large_group_is_read_whole()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        string Mail(string who) => $"{who}.{run}@example.com";
        string Dn(string who) => $"uid={who}-{run},{Slapd.PeopleDn}";
        string[] members = ["stays", "leaves", "grows"];
        app.Ldap.Modify(string.Concat(members.Append("outsider").Select(w => DirectoryEnrollmentWithdrawalTests.Entry(run, w, Mail(w))))
            + $"dn: {DirectoryEnrollmentApp.GroupDn}\nobjectClass: groupOfNames\ncn: smime-users\n" + string.Concat(members.Select(w => $"member: {Dn(w)}\n")),
            add: true);
        var first = await DirectoryEnrollmentTests.RunAsync(app, dryRun: false);
        Assert.Equal(members.Select(Mail).Order(), DirectoryEnrollmentWithdrawalTests.Ours(first, "invited", run).Order());

        // Taken out of the group; the entry stays (and the outsider, never a member, is never the job's to invite or withdraw).
        app.Ldap.Modify($"dn: {DirectoryEnrollmentApp.GroupDn}\nchangetype: modify\ndelete: member\nmember: {Dn("leaves")}\n");
        var dry = await DirectoryEnrollmentTests.RunAsync(app, dryRun: true);
        Assert.Equal([Mail("leaves")], DirectoryEnrollmentWithdrawalTests.Ours(dry, "would-withdraw", run));
        var real = await DirectoryEnrollmentTests.RunAsync(app, dryRun: false);
        Assert.Equal(JsonValueKind.Null, real.GetProperty("listingIncomplete").ValueKind);
        Assert.Equal([Mail("leaves")], DirectoryEnrollmentWithdrawalTests.Ours(real, "withdrawn", run));
        Assert.Contains("dn:", app.Ldap.Search(Slapd.PeopleDn, $"(mail={Mail("leaves")})", "dn"), StringComparison.Ordinal);
        Assert.Equal("revoked", await StatusAsync(Mail("leaves")));
        Assert.Equal("pending", await StatusAsync(Mail("stays")));
        Assert.Empty(await TokensAsync(Mail("outsider")));

        // The group grows past the range size (values naming entries that do not exist, which cost the job nothing: it lists people
        // with mail and keeps the group's members); the person taken out comes back into it. Read whole: nobody's link is taken,
        // and the person who came back is invited again.
        app.Ldap.Modify($"dn: {DirectoryEnrollmentApp.GroupDn}\nchangetype: modify\nadd: member\nmember: {Dn("leaves")}\n"
            + string.Concat(Enumerable.Range(0, LargerThanActiveDirectoryRanges).Select(i => string.Create(CultureInfo.InvariantCulture, $"member: uid=absent{i}-{run},{Slapd.PeopleDn}\n"))));
        var large = await DirectoryEnrollmentTests.RunAsync(app, dryRun: false);
        Assert.Equal(JsonValueKind.Null, large.GetProperty("listingIncomplete").ValueKind);
        Assert.Equal(0, large.GetProperty("withdrawn").GetInt32());
        Assert.Equal([Mail("leaves")], DirectoryEnrollmentWithdrawalTests.Ours(large, "invited", run));

        // A member of the large group taken out of it loses the link; the others keep theirs.
        app.Ldap.Modify($"dn: {DirectoryEnrollmentApp.GroupDn}\nchangetype: modify\ndelete: member\nmember: {Dn("grows")}\n");
        var after = await DirectoryEnrollmentTests.RunAsync(app, dryRun: false);
        Assert.Equal(JsonValueKind.Null, after.GetProperty("listingIncomplete").ValueKind);
        Assert.Equal([Mail("grows")], DirectoryEnrollmentWithdrawalTests.Ours(after, "withdrawn", run));
        Assert.Equal("pending", await StatusAsync(Mail("stays")));
        Assert.Equal(["pending", "revoked"], (await TokensAsync(Mail("leaves"))).Select(t => t.GetProperty("status").GetString()).Order());
    }

    private Task<List<JsonElement>> TokensAsync(string email) => DirectoryEnrollmentWithdrawalTests.TokensAsync(app, email);

    private Task<string> StatusAsync(string email) => DirectoryEnrollmentWithdrawalTests.StatusAsync(app, email);
}

/// <summary>A continuation reference in the listing (a subtree under the base held by another server, RFC 4511 4.5.3): the people
/// there were not read, so a run withdraws nothing and says why; with the reference gone, the run withdraws. (DirectoryReferralTests
/// covers referrals when publishing certificates, not in a listing.)</summary>
[Collection(nameof(DirectoryEnrollmentRuns))]
public sealed class DirectoryEnrollmentReferralWithdrawalTests(WholeDirectoryEnrollmentApp app) : IClassFixture<WholeDirectoryEnrollmentApp>
{
    [Fact]
    public async Task A_listing_with_a_continuation_reference_withdraws_no_link_and_says_so()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        string Mail(string who) => $"{who}.{run}@example.com";
        app.Ldap.Modify(DirectoryEnrollmentWithdrawalTests.Entry(run, "stays", Mail("stays")) + DirectoryEnrollmentWithdrawalTests.Entry(run, "leaves", Mail("leaves")), add: true);
        var first = await DirectoryEnrollmentTests.RunAsync(app, dryRun: false);
        Assert.Equal([Mail("leaves"), Mail("stays")], DirectoryEnrollmentWithdrawalTests.Ours(first, "invited", run).Order());

        var partners = $"ou=partners-{run},{Slapd.PeopleDn}";
        app.Ldap.AddReferral(partners, $"partners-{run}");
        app.Ldap.Modify($"dn: uid=leaves-{run},{Slapd.PeopleDn}\nchangetype: delete\n");
        foreach (var dryRun in new[] { true, false })
        {
            var referred = await DirectoryEnrollmentTests.RunAsync(app, dryRun);
            Assert.Contains("ldap://partner.example.test/", referred.GetProperty("listingIncomplete").GetString());
            Assert.Equal(0, referred.GetProperty("withdrawn").GetInt32());
            Assert.Empty(DirectoryEnrollmentWithdrawalTests.Ours(referred, dryRun ? "would-withdraw" : "withdrawn", run));
        }
        Assert.Equal("pending", await DirectoryEnrollmentWithdrawalTests.StatusAsync(app, Mail("leaves")));

        app.Ldap.RemoveReferral(partners);
        var whole = await DirectoryEnrollmentTests.RunAsync(app, dryRun: false);
        Assert.Equal(JsonValueKind.Null, whole.GetProperty("listingIncomplete").ValueKind);
        Assert.Equal([Mail("leaves")], DirectoryEnrollmentWithdrawalTests.Ours(whole, "withdrawn", run));
    }
}

/// <summary>Test classes whose runs invite take turns: on SQLite the run lock is one per process (every fixture's app in this
/// test process shares it), so a run of one class was refused (409) while another class's run held it.</summary>
[CollectionDefinition(nameof(DirectoryEnrollmentRuns))]
public sealed class DirectoryEnrollmentRuns;
