using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Mail;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Gal;

/// <summary>Publishing to slapd, mailing through aiosmtpd, and inviting the members of one LDAP group (on demand only:
/// the test starts every run itself).</summary>
public class DirectoryEnrollmentApp : DirectoryApp
{
    public const string GroupDn = "cn=smime-users," + Slapd.Suffix;

    public DirectoryEnrollmentApp() { }

    protected DirectoryEnrollmentApp(Slapd ldap) : base(ldap) { }

    /// <summary>Whose members are invited; null: every person under the people base.</summary>
    protected virtual string? Group => GroupDn;
    public SmtpServer Smtp { get; } = new();

    protected override IDictionary<string, string?> Settings
    {
        get
        {
            var settings = base.Settings;
            foreach (var (k, v) in MailApp.MailSettings(Smtp.Port)) settings[k] = v;
            settings["DirectoryEnrollment:Enabled"] = "true";
            settings["DirectoryEnrollment:GroupDn"] = Group ?? "";
            settings["DirectoryEnrollment:Interval"] = "";
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

/// <summary>Auto-enrollment from the directory: 500 people in the group, 100 of them enrolled already. The dry run lists
/// the 400 others and changes nothing; the run invites exactly them (each message arrives once); the next run finds
/// nobody to invite. People outside the group, and entries without mail, are never invited.</summary>
[Collection(nameof(DirectoryEnrollmentRuns))]
public sealed class DirectoryEnrollmentTests(DirectoryEnrollmentApp app) : IClassFixture<DirectoryEnrollmentApp>
{
    [Fact]
    public async Task Four_hundred_of_five_hundred_are_invited_once_and_the_dry_run_lists_the_same_people()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        string Mail(int i) => DirectoryPeople.Mail(run, i);
        var ldif = DirectoryPeople.Ldif(run, 500);
        var members = new StringBuilder();
        for (var i = 0; i < 500; i++) members.Append(CultureInfo.InvariantCulture, $"member: {DirectoryPeople.Dn(run, i)}\n");
        // Outside the group: never invited. In the group without mail: nothing to send to.
        ldif.Append(CultureInfo.InvariantCulture, $"dn: uid=outsider-{run},{Slapd.PeopleDn}\nobjectClass: inetOrgPerson\nuid: outsider-{run}\ncn: Outsider\nsn: O\nmail: outsider.{run}@example.com\n\n");
        ldif.Append(CultureInfo.InvariantCulture, $"dn: uid=nomail-{run},{Slapd.PeopleDn}\nobjectClass: inetOrgPerson\nuid: nomail-{run}\ncn: No Mail\nsn: N\n\n");
        ldif.Append(CultureInfo.InvariantCulture, $"dn: {DirectoryEnrollmentApp.GroupDn}\nobjectClass: groupOfNames\ncn: smime-users\n").Append(members)
            .Append(CultureInfo.InvariantCulture, $"member: uid=nomail-{run},{Slapd.PeopleDn}\n\n");
        app.Ldap.Modify(ldif.ToString(), add: true);

        for (var i = 0; i < 100; i++) await app.IssueAsync(Mail(i), "dual");

        // The dry run: the 400 without a certificate, and nothing created or sent.
        var dry = await RunAsync(dryRun: true);
        Assert.True(dry.GetProperty("dryRun").GetBoolean());
        Assert.Equal(500, dry.GetProperty("found").GetInt32());
        Assert.Equal(100, dry.GetProperty("alreadyEnrolled").GetInt32());
        Assert.Equal(400, dry.GetProperty("invited").GetInt32());
        var listed = People(dry, "would-invite");
        Assert.Equal(Enumerable.Range(100, 400).Select(Mail).Order(), listed.Order());
        Assert.Equal(0, await InvitationsQueuedAsync());
        Assert.Empty(await app.Admin.GetFromJsonAsync<JsonElement[]>($"/api/v1/tokens?email={Mail(100)}", Http.Json) ?? []);

        // The run: the same 400 are invited.
        var real = await RunAsync(dryRun: false);
        Assert.Equal(400, real.GetProperty("invited").GetInt32());
        Assert.Equal(0, real.GetProperty("failed").GetInt32());
        Assert.Equal(listed.Order(), People(real, "invited").Order());
        Assert.Equal(400, await InvitationsQueuedAsync());

        // The next run finds no one: 100 enrolled, 400 invited within the period.
        var next = await RunAsync(dryRun: false);
        Assert.Equal(0, next.GetProperty("invited").GetInt32());
        Assert.Equal(400, next.GetProperty("recentlyInvited").GetInt32());
        Assert.Equal(100, next.GetProperty("alreadyEnrolled").GetInt32());

        // Every invitation arrives, once, with an enrollment link; none to the enrolled, the outsider or anyone twice.
        var arrived = await app.Smtp.WaitForAsync(all => all.Count(m => m.To.ToString().Contains(run, StringComparison.Ordinal)) >= 400, seconds: 180);
        var ours = arrived.Where(m => m.To.ToString().Contains(run, StringComparison.Ordinal)).ToList();
        await Task.Delay(1000);
        Assert.Equal(400, app.Smtp.Messages().Count(m => m.To.ToString().Contains(run, StringComparison.Ordinal)));
        Assert.Equal(400, ours.Select(m => m.To.ToString()).Distinct().Count());
        Assert.Empty(app.Smtp.MessagesTo($"outsider.{run}@example.com"));
        Assert.Empty(app.Smtp.MessagesTo(Mail(0)));
        Assert.Contains("/enroll#token=cpt_", app.Smtp.MessagesTo(Mail(250)).Single().TextBody);

        var runs = await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/directory/enrollment-runs", Http.Json);
        Assert.True(runs.GetArrayLength() >= 3);
        // As recorded (what the console lists): the count written with each invitation's commit.
        Assert.Equal(400, runs.EnumerateArray().Single(r => r.GetProperty("id").GetInt64() == real.GetProperty("runId").GetInt64())
            .GetProperty("invited").GetInt32());
    }

    [Fact]
    public async Task A_run_that_would_invite_is_refused_while_another_is_under_way_and_a_dry_run_is_not()
    {
        await using var scope = app.Services.CreateAsyncScope();
        await using (var held = await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>()
                         .TryHoldNamedAsync(CertPortal.Gal.DirectoryEnrollment.RunLock, CancellationToken.None))
        {
            Assert.NotNull(held);
            var refused = await app.Admin.PostAsJsonAsync("/api/v1/directory/enrollment-runs", new { dryRun = false });
            Assert.Contains("inviting people right now", (await Http.AssertProblem(refused, HttpStatusCode.Conflict)).GetProperty("detail").GetString());
            await Http.EnsureStatus(await app.Admin.PostAsJsonAsync("/api/v1/directory/enrollment-runs", new { dryRun = true }), HttpStatusCode.OK);
        }
    }

    [Fact]
    public async Task Only_administrators_start_a_run()
    {
        var (_, auditor) = await app.CreateAccountAsync($"auditor-{Guid.NewGuid():N}"[..20], "auditor");
        Assert.Equal(HttpStatusCode.Forbidden, (await auditor.PostAsJsonAsync("/api/v1/directory/enrollment-runs", new { dryRun = true })).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await app.Client.PostAsJsonAsync("/api/v1/directory/enrollment-runs", new { dryRun = true })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await auditor.GetAsync("/api/v1/directory/enrollment-runs")).StatusCode);
    }

    [Fact]
    public async Task The_console_button_lists_who_would_be_invited()
    {
        var name = "dirinvite" + Guid.NewGuid().ToString("N")[..6];
        const string password = "a long console password for the directory";
        await Http.EnsureStatus(await app.Admin.PostAsJsonAsync("/api/v1/accounts", new { name, displayName = name, role = "administrator", password }),
            HttpStatusCode.Created);
        using var console = await ConsoleSignIn.SignedInClientAsync(app.BaseUrl, name, password);
        var page = await console.GetStringAsync("/admin/invitations");
        Assert.Contains("List who would be invited", page);
        // A dry run only: a real one here would invite the people of the other test before its own runs.
        var listed = await console.PostAsync("/admin/invitations?handler=Directory", new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["dryRun"] = "true",
            ["__RequestVerificationToken"] = await ConsoleSignIn.AntiforgeryTokenAsync(console, "/admin/invitations"),
        }));
        var html = await listed.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, listed.StatusCode);
        Assert.Contains("would be invited", html);
        Assert.Contains("Nothing was created or sent.", html);
    }

    private Task<JsonElement> RunAsync(bool dryRun) => RunAsync(app, dryRun);

    internal static async Task<JsonElement> RunAsync(CertPortalApp app, bool dryRun)
    {
        var response = await app.Admin.PostAsJsonAsync("/api/v1/directory/enrollment-runs", new { dryRun });
        await Http.EnsureStatus(response, HttpStatusCode.OK);
        return await response.Content.ReadFromJsonAsync<JsonElement>(Http.Json);
    }

    internal static List<string> People(JsonElement report, string status) =>
        report.GetProperty("people").EnumerateArray().Where(p => p.GetProperty("status").GetString() == status)
            .Select(p => p.GetProperty("email").GetString()!).ToList();

    private async Task<int> InvitationsQueuedAsync() =>
        (await app.Admin.GetFromJsonAsync<JsonElement>("/api/v1/notifications?kind=invitation&pageSize=1", Http.Json)).GetProperty("total").GetInt32();
}

/// <summary>Every person under the people base, no group.</summary>
public sealed class WholeDirectoryEnrollmentApp : DirectoryEnrollmentApp
{
    protected override string? Group => null;
}

/// <summary>A mailbox is one person in any case, as LDAP finds mail and as CertPortal compares mailboxes: someone enrolled as
/// "case.person@" whose entry says "Case.Person@" was invited again every ReinviteAfter, and two entries spelling one mailbox
/// two ways were both invited.</summary>
public sealed class DirectoryEnrollmentCaseTests(WholeDirectoryEnrollmentApp app) : IClassFixture<WholeDirectoryEnrollmentApp>
{
    [Fact]
    public async Task A_person_enrolled_under_another_spelling_is_not_invited_and_two_spellings_are_invited_once()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        var ldif = new StringBuilder();
        foreach (var (uid, mail) in new[] { ("case", $"Case.Person.{run}@example.com"), ("twice-a", $"Twice.{run}@example.com"), ("twice-b", $"twice.{run}@example.com") })
            ldif.Append(CultureInfo.InvariantCulture, $"dn: uid={uid}-{run},{Slapd.PeopleDn}\nobjectClass: inetOrgPerson\nuid: {uid}-{run}\ncn: {uid}\nsn: {uid}\nmail: {mail}\n\n");
        app.Ldap.Modify(ldif.ToString(), add: true);
        await app.IssueAsync($"case.person.{run}@example.com", "dual");

        var dry = await DirectoryEnrollmentTests.RunAsync(app, dryRun: true);
        var invited = DirectoryEnrollmentTests.People(dry, "would-invite");
        Assert.DoesNotContain(invited, e => e.Equals($"case.person.{run}@example.com", StringComparison.OrdinalIgnoreCase));
        Assert.Single(invited, e => e.Equals($"twice.{run}@example.com", StringComparison.OrdinalIgnoreCase));
        Assert.True(dry.GetProperty("alreadyEnrolled").GetInt32() >= 1);
    }
}

/// <summary>Without a directory, the feature says it is off: 422, and the console page still works.</summary>
public sealed class DirectoryEnrollmentOffTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Fact]
    public async Task A_run_without_the_feature_is_a_422_not_a_500()
    {
        var response = await app.Admin.PostAsJsonAsync("/api/v1/directory/enrollment-runs", new { dryRun = true });
        var problem = await Http.AssertProblem(response, HttpStatusCode.UnprocessableEntity);
        Assert.Contains("DirectoryEnrollment:Enabled", problem.GetProperty("detail").GetString());
        Assert.Equal("[]", await app.Admin.GetStringAsync("/api/v1/directory/enrollment-runs"));
    }
}

/// <summary>People in slapd as an organisation's directory lists them: uid, names, displayName and mail.</summary>
public static class DirectoryPeople
{
    public static string Mail(string run, int i) => $"person{i:D3}.{run}@example.com";

    public static string Dn(string run, int i) => $"uid=p{i:D3}-{run},{Slapd.PeopleDn}";

    /// <summary>LDIF adding people 0 to <paramref name="count"/> - 1 under <see cref="Slapd.PeopleDn"/>.</summary>
    public static StringBuilder Ldif(string run, int count)
    {
        var ldif = new StringBuilder();
        for (var i = 0; i < count; i++)
            ldif.Append(CultureInfo.InvariantCulture, $"dn: {Dn(run, i)}\nobjectClass: inetOrgPerson\nuid: p{i:D3}-{run}\ncn: Person {i}\nsn: {i}\n")
                .Append(CultureInfo.InvariantCulture, $"displayName: Person {i} Example\nmail: {Mail(run, i)}\n\n");
        return ldif;
    }
}

/// <summary>What a person already holds that makes another invitation wrong, whatever ReinviteAfter says. A link that still works
/// (an administrator's token valid for 30 days, made 20 days ago, with the default ReinviteAfter of 14 days): the run mailed a
/// second live link beside it. A certificate on hold: the run invited its holder to a new certificate, which undid the hold.</summary>
[Collection(nameof(DirectoryEnrollmentRuns))]
public sealed class DirectoryEnrollmentStandingTests(WholeDirectoryEnrollmentApp app) : IClassFixture<WholeDirectoryEnrollmentApp>
{
    [Fact]
    public async Task A_person_whose_older_link_still_works_is_not_invited_again_and_one_whose_link_expired_is()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        string Mail(string who) => $"{who}.{run}@example.com";
        var ldif = new StringBuilder();
        foreach (var who in new[] { "live", "lapsed", "fresh" })
            ldif.Append(CultureInfo.InvariantCulture, $"dn: uid={who}-{run},{Slapd.PeopleDn}\nobjectClass: inetOrgPerson\nuid: {who}-{run}\ncn: {who}\nsn: {who}\nmail: {Mail(who)}\n\n");
        app.Ldap.Modify(ldif.ToString(), add: true);

        // Both tokens made 20 days ago: one for 30 days (works for 10 more), one for 3 (expired 17 days ago).
        var now = DateTimeOffset.UtcNow;
        foreach (var (who, hours) in new[] { ("live", 720), ("lapsed", 72) })
        {
            var r = await app.Admin.PostAsJsonAsync("/api/v1/tokens", new { email = Mail(who), profile = "dual", validHours = hours });
            await Http.EnsureStatus(r, HttpStatusCode.Created);
            var id = (await r.Content.ReadFromJsonAsync<JsonElement>(Http.Json)).GetProperty("id").GetGuid();
            await using var scope = app.Services.CreateAsyncScope();
            var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
            var token = await db.EnrollmentTokens.SingleAsync(t => t.Id == id);
            token.CreatedAt = now.AddDays(-20);
            token.ExpiresAt = token.CreatedAt.AddHours(hours);
            await db.SaveChangesAsync();
        }

        var report = await DirectoryEnrollmentTests.RunAsync(app, dryRun: false);
        var invited = DirectoryEnrollmentTests.People(report, "invited");
        Assert.DoesNotContain(Mail("live"), invited);
        Assert.Contains(Mail("lapsed"), invited);
        Assert.Contains(Mail("fresh"), invited);
        Assert.Equal(1, report.GetProperty("recentlyInvited").GetInt32());
        await app.Smtp.WaitForMessagesToAsync(Mail("fresh"));
        Assert.Empty(app.Smtp.MessagesTo(Mail("live")));
    }

    [Fact]
    public async Task A_person_whose_certificate_is_on_hold_is_not_invited_and_one_whose_certificate_was_revoked_is()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        string Mail(string who) => $"{who}.{run}@example.com";
        var ldif = new StringBuilder();
        foreach (var who in new[] { "held", "revoked" })
            ldif.Append(CultureInfo.InvariantCulture, $"dn: uid={who}-{run},{Slapd.PeopleDn}\nobjectClass: inetOrgPerson\nuid: {who}-{run}\ncn: {who}\nsn: {who}\nmail: {Mail(who)}\n\n");
        app.Ldap.Modify(ldif.ToString(), add: true);
        foreach (var (who, reason) in new[] { ("held", "certificateHold"), ("revoked", "affiliationChanged") })
        {
            var (cert, _) = await app.IssueAsync(Mail(who), "dual");
            await Http.EnsureStatus(await app.RevokeAsync(cert.SerialNumber, reason), HttpStatusCode.OK);
            await EnrolledLongAgoAsync(Mail(who));
        }

        var dry = await DirectoryEnrollmentTests.RunAsync(app, dryRun: true);
        var listed = DirectoryEnrollmentTests.People(dry, "would-invite");
        Assert.DoesNotContain(Mail("held"), listed);
        Assert.Contains(Mail("revoked"), listed);
    }

    /// <summary>The job invites for dual IDs. Someone who holds a signing and an encryption ID side by side has both uses: a dual
    /// ID beside them was a third ID and a second encryption key to keep. Someone with a signing ID alone is still invited.</summary>
    [Fact]
    public async Task A_person_with_separate_signing_and_encryption_ids_is_not_invited_for_a_dual_one()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        string Mail(string who) => $"{who}.{run}@example.com";
        var ldif = new StringBuilder();
        foreach (var who in new[] { "pair", "half" })
            ldif.Append(CultureInfo.InvariantCulture, $"dn: uid={who}-{run},{Slapd.PeopleDn}\nobjectClass: inetOrgPerson\nuid: {who}-{run}\ncn: {who}\nsn: {who}\nmail: {Mail(who)}\n\n");
        app.Ldap.Modify(ldif.ToString(), add: true);
        await app.IssueAsync(Mail("pair"), "signing");
        await app.IssueAsync(Mail("pair"), "encryption");
        await app.IssueAsync(Mail("half"), "signing");
        await EnrolledLongAgoAsync(Mail("pair"));
        await EnrolledLongAgoAsync(Mail("half"));

        var dry = await DirectoryEnrollmentTests.RunAsync(app, dryRun: true);
        var listed = DirectoryEnrollmentTests.People(dry, "would-invite");
        Assert.DoesNotContain(Mail("pair"), listed);
        Assert.Contains(Mail("half"), listed);
    }

    /// <summary>Enrolled months ago: the tokens spent then are long out of ReinviteAfter.</summary>
    private async Task EnrolledLongAgoAsync(string email)
    {
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        foreach (var token in await db.EnrollmentTokens.Where(t => t.Email == email).ToListAsync())
        {
            token.CreatedAt = DateTimeOffset.UtcNow.AddDays(-100);
            token.ExpiresAt = token.CreatedAt.AddHours(72);
        }
        await db.SaveChangesAsync();
    }
}

/// <summary>mail is multi-valued: an entry lists a person's aliases beside the primary address. Someone enrolled under an alias
/// (a certificate, or a link that still works, for alias@) was invited again every ReinviteAfter for the first value.</summary>
public sealed class DirectoryEnrollmentAliasTests(WholeDirectoryEnrollmentApp app) : IClassFixture<WholeDirectoryEnrollmentApp>
{
    [Fact]
    public async Task A_person_enrolled_or_invited_under_an_alias_is_not_invited_for_the_first_mail_value()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        string Primary(string who) => $"{who}.{run}@example.com";
        string Alias(string who) => $"{who}.alias.{run}@example.com";
        var ldif = new StringBuilder();
        foreach (var who in new[] { "enrolled", "linked", "plain" })
            ldif.Append(CultureInfo.InvariantCulture, $"dn: uid={who}-{run},{Slapd.PeopleDn}\nobjectClass: inetOrgPerson\nuid: {who}-{run}\ncn: {who}\nsn: {who}\n")
                .Append(CultureInfo.InvariantCulture, $"mail: {Primary(who)}\nmail: {Alias(who)}\n\n");
        app.Ldap.Modify(ldif.ToString(), add: true);
        await app.IssueAsync(Alias("enrolled"), "dual");
        await Http.EnsureStatus(await app.Admin.PostAsJsonAsync("/api/v1/tokens", new { email = Alias("linked"), profile = "dual", validHours = 72 }),
            HttpStatusCode.Created);

        var dry = await DirectoryEnrollmentTests.RunAsync(app, dryRun: true);
        var listed = DirectoryEnrollmentTests.People(dry, "would-invite").Where(e => e.Contains(run, StringComparison.Ordinal)).ToList();
        Assert.True(listed.SequenceEqual([Primary("plain")]), $"would invite [{string.Join(", ", listed)}], expected only {Primary("plain")}");
        Assert.Equal(1, dry.GetProperty("alreadyEnrolled").GetInt32());
        Assert.Equal(1, dry.GetProperty("recentlyInvited").GetInt32());
    }

    /// <summary>An entry whose first mail value the CA would refuse was reported as failed although an alias would do.</summary>
    [Fact]
    public async Task A_person_whose_first_mail_value_is_refused_is_invited_at_the_first_alias_that_is_not()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        var ldif = new StringBuilder()
            .Append(CultureInfo.InvariantCulture, $"dn: uid=odd-{run},{Slapd.PeopleDn}\nobjectClass: inetOrgPerson\nuid: odd-{run}\ncn: odd\nsn: odd\n")
            .Append(CultureInfo.InvariantCulture, $"mail: odd-{run}\nmail: odd.{run}@example.com\nmail: odd.second.{run}@example.com\n\n")
            .Append(CultureInfo.InvariantCulture, $"dn: uid=none-{run},{Slapd.PeopleDn}\nobjectClass: inetOrgPerson\nuid: none-{run}\ncn: none\nsn: none\n")
            .Append(CultureInfo.InvariantCulture, $"mail: none-{run}\nmail: none-{run}@\n\n");
        app.Ldap.Modify(ldif.ToString(), add: true);

        var dry = await DirectoryEnrollmentTests.RunAsync(app, dryRun: true);
        var listed = DirectoryEnrollmentTests.People(dry, "would-invite").Where(e => e.Contains(run, StringComparison.Ordinal)).ToList();
        var failed = DirectoryEnrollmentTests.People(dry, "failed").Where(e => e.Contains(run, StringComparison.Ordinal)).ToList();
        Assert.True(listed.SequenceEqual([$"odd.{run}@example.com"]), $"would invite [{string.Join(", ", listed)}], failed [{string.Join(", ", failed)}]");
        // Nothing the CA would issue for: reported with the first value, as before.
        Assert.Equal([$"none-{run}"], failed);
    }
}
