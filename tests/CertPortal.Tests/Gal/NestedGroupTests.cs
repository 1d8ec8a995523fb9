using CertPortal.Gal;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Gal;

/// <summary>Directory-driven enrollment from a group of groups, on a real slapd: "staff" holds a person and the group "sales",
/// which holds a person and the group "engineering", which holds a person and "staff" again (a loop). Before, only staff's own
/// person was listed: the members of the nested groups were never invited, and an earlier run's links to them were withdrawn as
/// if they had left.</summary>
public sealed class NestedGroupTests(Slapd ldap) : IClassFixture<Slapd>
{
    [Fact]
    public async Task The_members_of_nested_groups_are_listed_at_any_depth_and_a_loop_is_read_once()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        var staff = $"cn=staff-{run},{Slapd.Suffix}";
        var sales = $"cn=sales-{run},{Slapd.Suffix}";
        var engineering = $"cn=engineering-{run},{Slapd.Suffix}";
        var people = string.Join("\n", new[] { "ann", "bo", "cy", "outsider" }.Select(n => $"""
            dn: uid={n}-{run},{Slapd.PeopleDn}
            objectClass: inetOrgPerson
            uid: {n}-{run}
            cn: {n}
            sn: {n}
            mail: {n}.{run}@example.com

            """));
        ldap.Modify(people + "\n" + $"""
            dn: {staff}
            objectClass: groupOfNames
            cn: staff-{run}
            member: uid=ann-{run},{Slapd.PeopleDn}
            member: CN=Sales-{run}, {Slapd.Suffix}
            member: uid=gone-{run},{Slapd.PeopleDn}

            dn: {sales}
            objectClass: groupOfUniqueNames
            cn: sales-{run}
            uniqueMember: uid=bo-{run},{Slapd.PeopleDn}
            uniqueMember: {engineering}

            dn: {engineering}
            objectClass: groupOfNames
            cn: engineering-{run}
            member: uid=cy-{run},{Slapd.PeopleDn}
            member: {staff}
            """, add: true);

        var directory = new LdapDirectory(new DirectoryOptions
        {
            Url = ldap.Url, BindDn = Slapd.RootDn, BindPassword = Slapd.RootPassword, PeopleBaseDn = Slapd.PeopleDn, TimeoutSeconds = 5,
        });
        var listing = await directory.ListPeopleWithMailAsync(Slapd.PeopleDn, staff);

        // A member that is not there (gone) is no one; the listing is complete.
        Assert.Null(listing.Incomplete);
        Assert.Equal([$"ann.{run}@example.com", $"bo.{run}@example.com", $"cy.{run}@example.com"], listing.People.SelectMany(p => p.Mails).Order());
        // From the middle of the loop: the same three.
        Assert.Equal(3, (await directory.ListPeopleWithMailAsync(Slapd.PeopleDn, engineering)).People.Count);
    }

    /// <summary>A member held by another server (a referral, not followed) may be a group of people we cannot read: the listing
    /// says it is incomplete, so a run withdraws no one's link for not being in it.</summary>
    [Fact]
    public async Task A_member_held_by_another_server_makes_the_listing_incomplete()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        var partners = $"ou=partners-{run},{Slapd.Suffix}";
        ldap.AddReferral(partners, $"partners-{run}");
        var group = $"cn=mixed-{run},{Slapd.Suffix}";
        ldap.Modify($"""
            dn: uid=dee-{run},{Slapd.PeopleDn}
            objectClass: inetOrgPerson
            uid: dee-{run}
            cn: Dee
            sn: D
            mail: dee.{run}@example.com

            dn: {group}
            objectClass: groupOfNames
            cn: mixed-{run}
            member: uid=dee-{run},{Slapd.PeopleDn}
            member: cn=partner-staff,{partners}
            """, add: true);

        var listing = await new LdapDirectory(new DirectoryOptions
        {
            Url = ldap.Url, BindDn = Slapd.RootDn, BindPassword = Slapd.RootPassword, PeopleBaseDn = Slapd.PeopleDn, TimeoutSeconds = 5,
        }).ListPeopleWithMailAsync(Slapd.PeopleDn, group);

        Assert.Contains($"the member 'cn=partner-staff,{partners}' is held by another server", listing.Incomplete);
        Assert.Equal([$"dee.{run}@example.com"], listing.People.SelectMany(p => p.Mails));
    }
}
