using CertPortal.Gal;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Gal;

/// <summary>Directory-driven enrollment from an Active Directory group larger than MaxValRange (1500): AD answers a request for
/// <c>member</c> with <c>member;range=0-1499</c> and the rest only when asked range by range. Read as one answer, a group of 3,200
/// had 1,500 members, and the run invited no one else. The server is <see cref="RangedLdapServer"/> (no AD here); the client side
/// is the real libldap under System.DirectoryServices.Protocols.</summary>
public sealed class RangedGroupTests
{
    private const string GroupDn = "CN=S/MIME Users,OU=Groups,DC=corp,DC=example,DC=com";
    private const string PeopleDn = "OU=Staff,DC=corp,DC=example,DC=com";

    private static (string Dn, string Mail) Person(int i) => ($"CN=Person {i},{PeopleDn}", $"person{i}@example.test");

    private static LdapDirectory Directory(RangedLdapServer server) => new(new DirectoryOptions
    {
        Url = server.Url, BindDn = "CN=certportal,OU=Services,DC=corp,DC=example,DC=com", BindPassword = "not-checked", PeopleBaseDn = PeopleDn,
    });

    private static RangedLdapServer Server(int members, int people, int lastRangeServed = int.MaxValue) => new(GroupDn,
        [.. Enumerable.Range(0, members).Select(i => Person(i).Dn)], [.. Enumerable.Range(0, people).Select(Person)], maxValRange: 1500, lastRangeServed);

    [Fact]
    public async Task A_group_handed_out_in_ranges_is_read_whole()
    {
        await using var server = Server(members: 3200, people: 3500);

        var listing = await Directory(server).ListPeopleWithMailAsync(PeopleDn, GroupDn);

        Assert.Null(listing.Incomplete);
        Assert.Equal(Enumerable.Range(0, 3200).Select(i => Person(i).Mail).Order(), listing.People.Select(p => Assert.Single(p.Mails)).Order());
        Assert.Equal(["member,uniqueMember", "member;range=1500-*", "member;range=3000-*"], server.GroupRequests);
    }

    [Fact]
    public async Task A_group_whose_last_range_is_full_ends_with_it()
    {
        await using var server = Server(members: 3000, people: 3100);

        var listing = await Directory(server).ListPeopleWithMailAsync(PeopleDn, GroupDn);

        Assert.Null(listing.Incomplete);
        Assert.Equal(3000, listing.People.Count);
        Assert.Equal(["member,uniqueMember", "member;range=1500-*"], server.GroupRequests);
    }

    [Fact]
    public async Task A_group_whose_ranges_stop_coming_is_an_incomplete_listing()
    {
        await using var server = Server(members: 4000, people: 4000, lastRangeServed: 1500);

        var listing = await Directory(server).ListPeopleWithMailAsync(PeopleDn, GroupDn);

        // Incomplete: directory-driven enrollment then withdraws no one's link for not being listed.
        Assert.Contains("the range from 3000 did not come", listing.Incomplete);
        Assert.Equal(3000, listing.People.Count);
    }

    [Fact]
    public async Task A_small_group_is_one_answer()
    {
        await using var server = Server(members: 10, people: 20);

        var listing = await Directory(server).ListPeopleWithMailAsync(PeopleDn, GroupDn);

        Assert.Null(listing.Incomplete);
        Assert.Equal(10, listing.People.Count);
        Assert.Equal(["member,uniqueMember"], server.GroupRequests);
    }
}
