using CertPortal.Gal;

namespace CertPortal.Tests.Gal;

public sealed class LdapEscapingTests
{
    [Theory]
    [InlineData("alice@example.test", "alice@example.test")]
    [InlineData("a*)(uid=*))(|(uid=*@example.test", @"a\2a\29\28uid=\2a\29\29\28|\28uid=\2a@example.test")]
    [InlineData(@"back\slash", @"back\5cslash")]
    [InlineData("nul\0byte", @"nul\00byte")]
    [InlineData("é", @"\c3\a9")]
    public void Filter_values_escape_rfc4515_specials(string value, string expected) =>
        Assert.Equal(expected, LdapEscaping.EscapeFilterValue(value));

    [Theory]
    [InlineData("alice@example.test", "alice@example.test")]
    [InlineData("Smith, John", @"Smith\, John")]
    [InlineData(" lead", @"\ lead")]
    [InlineData("trail ", @"trail\ ")]
    [InlineData("#hash", @"\#hash")]
    [InlineData("a+b=c;d<e>\"f\\", @"a\+b\=c\;d\<e\>\""f\\")]
    public void Dn_values_escape_rfc4514_specials(string value, string expected) =>
        Assert.Equal(expected, LdapEscaping.EscapeDnValue(value));

    [Fact]
    public void Lone_surrogates_are_refused_rather_than_mangled() =>
        Assert.Throws<ArgumentException>(() => LdapEscaping.EscapeFilterValue("x\ud800y"));
}
