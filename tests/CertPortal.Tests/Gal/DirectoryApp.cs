using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Gal;

/// <summary>CertPortal publishing to its own private slapd, retrying quickly so tests run fast.</summary>
public class DirectoryApp : CertPortalApp
{
    public Slapd Ldap { get; }

    public DirectoryApp() : this(tls: false) { }

    protected DirectoryApp(bool tls) => Ldap = tls ? Slapd.WithTls() : new Slapd();

    /// <summary>Publishing to a slapd set up otherwise (see <see cref="Slapd"/>'s factories).</summary>
    protected DirectoryApp(Slapd ldap) => Ldap = ldap;

    protected override IDictionary<string, string?> Settings => DirectorySettings(Ldap);

    /// <summary>Publishing to <paramref name="ldap"/>, retrying quickly (also for nodes built without this class).</summary>
    public static Dictionary<string, string?> DirectorySettings(Slapd ldap) => new()
    {
        ["Directory:Url"] = ldap.Url,
        // Tests place holds, which the BR allow only for multipurpose (not strict) certificates.
        ["Issuance:PolicyOids:0"] = CertPortal.Authority.Oids.PolicyMailboxValidatedMultipurpose,
        ["Directory:BindDn"] = Slapd.RootDn,
        ["Directory:BindPassword"] = Slapd.RootPassword,
        ["Directory:PeopleBaseDn"] = Slapd.PeopleDn,
        ["Directory:PkiEntryDn"] = Slapd.PkiDn,
        ["Directory:RootPkiEntryDn"] = Slapd.RootPkiDn,
        ["Directory:PollInterval"] = "00:00:00.200",
        ["Directory:RetryBaseDelay"] = "00:00:00.200",
        ["Directory:RetryMaxDelay"] = "00:00:01",
        ["Directory:TimeoutSeconds"] = "5",
    };

    public override async Task InitializeAsync()
    {
        await Ldap.InitializeAsync();
        await base.InitializeAsync();
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await Ldap.DisposeAsync();
    }

    /// <summary>Waits until nothing is pending or failing in the outbox (scheduled expiries aside).</summary>
    public async Task<JsonElement> WaitForDirectoryAsync(int seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        JsonElement queue;
        do
        {
            queue = await Admin.GetFromJsonAsync<JsonElement>("/api/v1/directory/publications");
            if (queue.GetProperty("pending").GetInt32() == 0 && queue.GetProperty("failing").GetInt32() == 0) return queue;
            await Task.Delay(100);
        }
        while (DateTime.UtcNow < deadline);
        throw new TimeoutException("the directory outbox did not drain: " + queue);
    }

    public string Person(string email) => Ldap.Search(Slapd.PeopleDn, $"(mail={Escape(email)})", "*");

    public List<byte[]> PublishedCertificates(string email) => Slapd.BinaryValues(Person(email), "userCertificate;binary");

    /// <summary>RFC 4515 escaping for the test's own ldapsearch filters (the real client takes the filter as given).</summary>
    public static string Escape(string value) =>
        string.Concat(value.Select(c => c is '*' or '(' or ')' or '\\' or '\0' ? $"\\{(int)c:x2}" : c.ToString()));
}
