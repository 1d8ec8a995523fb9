using CertPortal.Gal;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Gal;

/// <summary>Directory-driven enrollment's group listing against a real slapd, whose member values are not written as the
/// entries' DNs: slapd rewrites a member value's types, separators, escapes and RDN order into its own form, but keeps the
/// value's case and inner spaces as the group's author wrote them, and a uniqueMember value may carry an optional UID. Each
/// member is still found; the person outside the group is not.</summary>
public sealed class GroupMemberDnTests(Slapd ldap) : IClassFixture<Slapd>
{
    [Fact]
    public async Task Members_written_with_other_case_spacing_and_escaping_than_their_entries_are_found()
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        var group = $"cn=members-{run},{Slapd.Suffix}";
        var unique = $"cn=unique-{run},{Slapd.Suffix}";
        ldap.Modify($"""
            dn: uid=ann  lee-{run},{Slapd.PeopleDn}
            objectClass: inetOrgPerson
            uid: ann  lee-{run}
            cn: Ann Lee
            sn: Lee
            mail: ann.{run}@example.com

            dn: cn=Smith\, John+uid=jsmith-{run},{Slapd.PeopleDn}
            objectClass: inetOrgPerson
            uid: jsmith-{run}
            cn: Smith, John
            sn: Smith
            mail: john.{run}@example.com

            dn: uid=bo-{run},{Slapd.PeopleDn}
            objectClass: inetOrgPerson
            uid: bo-{run}
            cn: Bo
            sn: B
            mail: bo.{run}@example.com

            dn: uid=outsider-{run},{Slapd.PeopleDn}
            objectClass: inetOrgPerson
            uid: outsider-{run}
            cn: Outsider
            sn: O
            mail: outsider.{run}@example.com

            dn: {group}
            objectClass: groupOfNames
            cn: members-{run}
            member: UserID=Ann Lee-{run} , OU=People, DC=Example, DC=Test
            member: UID=JSMITH-{run} + 2.5.4.3=smith\2c  john,ou=people;dc=example;dc=test

            dn: {unique}
            objectClass: groupOfUniqueNames
            cn: unique-{run}
            uniqueMember: uid=BO-{run},ou=people,dc=example,dc=test#'0101'B
            """, add: true);
        // What slapd hands back: its own form, with the author's case and spaces (the test's premise).
        var stored = Slapd.TextValues(ldap.Search(group, "(objectClass=*)", "member"), "member");
        Assert.Contains($"uid=Ann Lee-{run},ou=People,dc=Example,dc=Test", stored);

        var directory = new LdapDirectory(new DirectoryOptions
        {
            Url = ldap.Url, BindDn = Slapd.RootDn, BindPassword = Slapd.RootPassword, PeopleBaseDn = Slapd.PeopleDn, TimeoutSeconds = 5,
        });
        var members = await directory.ListPeopleWithMailAsync(Slapd.PeopleDn, group);
        Assert.Null(members.Incomplete);
        Assert.Equal([$"ann.{run}@example.com", $"john.{run}@example.com"], members.People.SelectMany(p => p.Mails).Order());
        var uniqueMembers = await directory.ListPeopleWithMailAsync(Slapd.PeopleDn, unique);
        Assert.Equal([$"bo.{run}@example.com"], uniqueMembers.People.SelectMany(p => p.Mails));
    }
}
