using CertPortal.Gal;

namespace CertPortal.Tests.Gal;

/// <summary>Group member values against entry DNs, as directories hand them out: the same entry written otherwise matches, a
/// different entry does not, however its value is escaped.</summary>
public sealed class DistinguishedNameMatchTests
{
    [Theory]
    // Types: case, long names and aliases, OIDs (also "OID."-prefixed, RFC 1779).
    [InlineData("uid=ann,ou=people,dc=example,dc=test", "UID=ann,OU=people,DC=example,DC=test")]
    [InlineData("cn=Ann Lee,ou=people,dc=example,dc=test", "commonName=Ann Lee,organizationalUnitName=people,domainComponent=example,dc=test")]
    [InlineData("uid=ann,ou=people,dc=example,dc=test", "userid=ann,ou=people,dc=example,dc=test")]
    [InlineData("cn=Ann Lee,ou=people,dc=example,dc=test", "2.5.4.3=Ann Lee,2.5.4.11=people,0.9.2342.19200300.100.1.25=example,dc=test")]
    [InlineData("cn=Ann Lee,o=Example", "OID.2.5.4.3=Ann Lee,oid.2.5.4.10=Example")]
    // Values ignoring case, also beyond ASCII.
    [InlineData("uid=ann,ou=people,dc=example,dc=test", "uid=ANN,ou=People,dc=Example,dc=TEST")]
    [InlineData("uid=rené,ou=people,dc=example,dc=test", @"uid=REN\C3\89,ou=people,dc=example,dc=test")]
    // Spaces: around separators, leading/trailing (escaped or not) and inner runs in values.
    [InlineData("cn=Ann Lee,ou=people,dc=example,dc=test", " cn = Ann Lee , ou = people ,dc=example, dc=test ")]
    [InlineData("cn=Ann Lee,ou=people,dc=example,dc=test", @"cn=Ann  Lee,ou=people,dc=example,dc=test")]
    [InlineData("cn=Ann Lee,ou=people,dc=example,dc=test", @"cn=\20Ann\20\20Lee\ ,ou=people,dc=example,dc=test")]
    [InlineData("cn=Ann Lee,ou=people", "cn=Ann\u00a0Lee,ou=people")]
    // Escapes: \, and \2C (and lower-case hex) are one character; UTF-8 as hex escapes or as text.
    [InlineData(@"cn=Smith\, John,ou=people,dc=example,dc=test", @"cn=Smith\2C John,ou=people,dc=example,dc=test")]
    [InlineData(@"cn=Smith\, John,ou=people,dc=example,dc=test", @"cn=Smith\2c John,ou=people,dc=example,dc=test")]
    [InlineData(@"cn=a\+b,ou=people", @"cn=a\2Bb,ou=people")]
    [InlineData(@"cn=x\=y,ou=people", "cn=x=y,ou=people")]
    [InlineData(@"cn=\#1,ou=people", @"cn=\231,ou=people")]
    [InlineData("cn=Zoë Ödön,ou=people", @"cn=Zo\C3\AB \C3\96d\C3\B6n,ou=people")]
    // Multi-valued RDNs in any order.
    [InlineData(@"cn=Smith\, John+uid=jsmith,ou=people,dc=example,dc=test", @"uid=jsmith + CN=Smith\2C John,ou=people,dc=example,dc=test")]
    // RFC 2253/1779 forms slapd still accepts: ';' between RDNs, quoted values.
    [InlineData(@"cn=Smith\, John,ou=people,dc=example,dc=test", "cn=Smith\\, John;ou=people;dc=example;dc=test")]
    [InlineData(@"cn=Smith\, John,ou=people,dc=example,dc=test", "cn=\"Smith, John\",ou=people,dc=example,dc=test")]
    // Compatibility forms (NFKC): a full-width letter, a ligature.
    [InlineData("cn=Ann,ou=people", "cn=\uff21nn,ou=people")]
    [InlineData("cn=office,ou=people", "cn=o\ufb03ce,ou=people")]
    public void The_same_entry_written_otherwise_matches(string a, string b)
    {
        Assert.True(DistinguishedNameMatch.Equal(a, b), $"{DistinguishedNameMatch.Key(a)} / {DistinguishedNameMatch.Key(b)}");
        Assert.True(DistinguishedNameMatch.Equal(b, a));
    }

    [Theory]
    [InlineData("uid=ann,ou=people,dc=example,dc=test", "uid=anne,ou=people,dc=example,dc=test")]
    [InlineData("uid=ann,ou=people,dc=example,dc=test", "cn=ann,ou=people,dc=example,dc=test")]
    [InlineData("uid=ann,ou=people,dc=example,dc=test", "uid=ann,ou=staff,dc=example,dc=test")]
    [InlineData("uid=ann,ou=people,dc=example,dc=test", "uid=ann,dc=example,dc=test")]
    [InlineData("cn=Ann Lee,ou=people", "cn=AnnLee,ou=people")]
    // An escaped separator is part of the value: never the same as a separator.
    [InlineData(@"cn=Smith\, John,ou=people", "cn=Smith,cn=John,ou=people")]
    [InlineData(@"cn=Smith\2C John,ou=people", "cn=Smith,John,ou=people")]
    [InlineData(@"cn=a\+uid=b,ou=people", "cn=a+uid=b,ou=people")]
    [InlineData(@"cn=a\2Buid=b,ou=people", "cn=a+uid=b,ou=people")]
    [InlineData(@"cn=x\;y,ou=people", "cn=x;y,ou=people")]
    // A multi-valued RDN is not two RDNs, nor one of its values alone.
    [InlineData("cn=a+uid=b,ou=people", "cn=a,uid=b,ou=people")]
    [InlineData("cn=a+uid=b,ou=people", "uid=b,ou=people")]
    // A BER (#hex) value is not the string of its hex digits.
    [InlineData("cn=#04024869,ou=people", @"cn=\#04024869,ou=people")]
    public void Different_entries_do_not_match(string a, string b)
    {
        Assert.False(DistinguishedNameMatch.Equal(a, b), $"{DistinguishedNameMatch.Key(a)} / {DistinguishedNameMatch.Key(b)}");
        Assert.False(DistinguishedNameMatch.Equal(b, a));
    }

    [Theory]
    [InlineData("uid=ann,ou=people,dc=example,dc=test#'0101'B", "uid=ann,ou=people,dc=example,dc=test")]
    [InlineData("uid=ann,ou=people,dc=example,dc=test#''B", "uid=ann,ou=people,dc=example,dc=test")]
    [InlineData("uid=ann,ou=people,dc=example,dc=test", "uid=ann,ou=people,dc=example,dc=test")]
    // Not a UID: an escaped '#', or a bit string with other digits, stays part of the value.
    [InlineData(@"cn=x\#'01'B,ou=people", @"cn=x\#'01'B,ou=people")]
    [InlineData("uid=ann,dc=test#'012'B", "uid=ann,dc=test#'012'B")]
    public void A_unique_member_loses_only_its_optional_uid(string value, string expected) =>
        Assert.Equal(expected, DistinguishedNameMatch.WithoutOptionalUid(value));

    [Theory]
    [InlineData("not a dn")]
    [InlineData("cn=a,,dc=b")]
    [InlineData("=a,dc=b")]
    [InlineData(@"cn=a\")]
    [InlineData("cn=\"open,dc=b")]
    public void A_string_that_is_not_a_dn_matches_only_itself_ignoring_case(string value)
    {
        Assert.True(DistinguishedNameMatch.Equal(value, value.ToUpperInvariant()));
        Assert.False(DistinguishedNameMatch.Equal(value, "cn=a,dc=b"));
    }
}
