using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;

namespace CertPortal.Tests.Security;

/// <summary>A C# record prints every property in its generated <c>ToString</c>, so one that carries a secret (a token, a
/// password, an API key, a recovery share) leaks it into any log line or exception message that formats it, today's or a
/// future one's. Every record type of the service that has such a property must print something else.</summary>
public sealed partial class SecretsInRecordsTests
{
    // Property names that hold a secret (an enrollment link carries its token). Not matched: TokenId, TokenHash, ApiKeyPrefix and the like (identifiers, not secrets).
    [GeneratedRegex("^(Token|Secret|ApiKey|Password|Passphrase|Pkcs12Password|Share|PrivateKey.*|.*Password|EnrollmentUrl|Link)$")]
    private static partial Regex SecretName();

    [Fact]
    public void No_record_prints_a_secret_property()
    {
        var records = typeof(CertPortal.CertPortalOptions).Assembly.GetTypes()
            .Where(t => t is { IsClass: true, IsAbstract: false, ContainsGenericParameters: false } && t.GetMethod("<Clone>$") is not null)
            .ToList();
        Assert.True(records.Count > 20, $"only {records.Count} record types found: the search for records is broken");

        var checkedProperties = 0;
        var leaks = new List<string>();
        foreach (var type in records)
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.PropertyType != typeof(string) || !SecretName().IsMatch(property.Name) || property.SetMethod is null) continue;
            var instance = RuntimeHelpers.GetUninitializedObject(type);
            const string marker = "s3cr3t-marker-value";
            property.SetValue(instance, marker); // records' init accessors are callable through reflection
            checkedProperties++;
            if (instance.ToString()!.Contains(marker, StringComparison.Ordinal)) leaks.Add($"{type.FullName}.{property.Name}");
        }
        Assert.True(checkedProperties >= 4, $"only {checkedProperties} secret properties found: the name pattern is broken");
        Assert.True(leaks.Count == 0, "ToString prints: " + string.Join(", ", leaks));
    }
}
