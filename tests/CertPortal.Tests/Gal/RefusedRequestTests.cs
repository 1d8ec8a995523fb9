using CertPortal.Gal;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Gal;

/// <summary>slapd with a 256 KiB limit on a bound client's requests.</summary>
public sealed class RequestLimitedSlapd : IAsyncLifetime
{
    public const int Limit = 256 * 1024;
    public Slapd Ldap { get; } = Slapd.WithRequestLimit(Limit);
    public Task InitializeAsync() => Ldap.InitializeAsync();
    public Task DisposeAsync() => Ldap.DisposeAsync();
}

/// <summary>A request the directory refuses for what it carries (a CRL larger than slapd accepts: it closes the connection) is
/// that publication's failure, not an outage: reported as "directory down", it stopped each pass of the outbox after it, as an
/// outage does, and an operator read a size problem as a network one.</summary>
public sealed class RefusedRequestTests(RequestLimitedSlapd fixture) : IClassFixture<RequestLimitedSlapd>
{
    private Slapd Ldap => fixture.Ldap;

    private LdapDirectory Directory => new(new DirectoryOptions
    {
        Url = Ldap.Url, BindDn = Slapd.RootDn, BindPassword = Slapd.RootPassword, PeopleBaseDn = Slapd.PeopleDn, TimeoutSeconds = 5,
    });

    [Fact]
    public async Task A_crl_larger_than_the_directory_accepts_fails_its_publication_and_the_directory_stays_usable()
    {
        var (caDer, crl) = ExistingPkiEntryTests.CaAndCrl(revoked: 20_000);
        Assert.True(crl.Length > RequestLimitedSlapd.Limit, $"the CRL is only {crl.Length} bytes; the test proves nothing");

        var refused = await Assert.ThrowsAsync<DirectoryRequestRefusedException>(
            () => Directory.PublishCaAndCrlAsync(Slapd.PkiDn, [caDer], crl, null, fence: null));
        Assert.Contains("failed: 81 ", refused.Message, StringComparison.Ordinal);
        Assert.Contains(Slapd.PkiDn, refused.Message, StringComparison.Ordinal);
        Assert.Contains("bytes", refused.Message, StringComparison.Ordinal); // the size of what was refused, the likely reason

        // The directory itself is fine: a CRL it accepts goes in on the next call.
        var (_, small) = ExistingPkiEntryTests.CaAndCrl(revoked: 10);
        await Directory.PublishCaAndCrlAsync(Slapd.PkiDn, [caDer], small, null, fence: null);
        Assert.Equal(small, Assert.Single(Slapd.BinaryValues(Ldap.Search(Slapd.PkiDn, "(objectClass=*)", "*"), "certificateRevocationList;binary")));
    }

    [Fact]
    public async Task A_directory_that_is_down_is_still_reported_as_down()
    {
        var (caDer, crl) = ExistingPkiEntryTests.CaAndCrl(revoked: 10);
        await Ldap.StopAsync();
        try
        {
            await Assert.ThrowsAsync<DirectoryUnavailableException>(() => Directory.PublishCaAndCrlAsync(Slapd.PkiDn, [caDer], crl, null, fence: null));
        }
        finally
        {
            await Ldap.StartAsync();
        }
    }
}
