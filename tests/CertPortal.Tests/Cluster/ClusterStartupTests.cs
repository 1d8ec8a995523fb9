using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Cluster;

/// <summary>Nodes as separate processes on one PostgreSQL database: one CA for all of them, whoever starts first.</summary>
public sealed class ClusterStartupTests(PostgresServer postgres) : IClassFixture<PostgresServer>
{
    private Dictionary<string, string> OnNewDatabase() => new()
    {
        ["Database:Provider"] = "Postgres",
        ["Database:ConnectionString"] = postgres.ConnectionString("cluster_" + Guid.NewGuid().ToString("N")[..8]),
    };

    [Fact]
    public async Task Three_nodes_starting_at_once_on_an_empty_database_all_come_up_with_one_ca_and_share_console_sessions()
    {
        var settings = OnNewDatabase();
        await using var a = new CertPortalNode("a", settings);
        await using var b = new CertPortalNode("b", settings);
        await using var c = new CertPortalNode("c", settings);
        CertPortalNode[] nodes = [a, b, c];
        foreach (var n in nodes) n.Start();
        await Task.WhenAll(nodes.Select(n => n.WaitReadyAsync()));

        foreach (var path in new[] { "/ca/root.crt", "/ca/issuing.crt" })
        {
            var served = await Task.WhenAll(nodes.Select(n => n.Client().GetByteArrayAsync(path)));
            Assert.All(served, s => Assert.Equal(served[0], s));
        }

        // A console session made through one node works on the others (shared Data Protection keys).
        using var admin = a.Client(admin: true);
        const string password = "a long console password 4 cluster";
        var created = await admin.PostAsJsonAsync("/api/v1/accounts", new { name = "carla", displayName = "Carla", role = "administrator", password });
        await Http.EnsureStatus(created, HttpStatusCode.Created);
        Assert.Equal(HttpStatusCode.OK, await ConsoleSession.AdminPageAcrossNodesAsync(a.BaseUrl, b.BaseUrl, c.BaseUrl, "carla", password));
        Assert.Equal(HttpStatusCode.OK, await ConsoleSession.AdminPageAcrossNodesAsync(c.BaseUrl, a.BaseUrl, b.BaseUrl, "carla", password));
    }

    [Fact]
    public async Task A_node_with_an_empty_data_directory_joins_the_existing_ca_and_a_node_with_another_ca_refuses_to_start()
    {
        var settings = OnNewDatabase();
        await using var first = new CertPortalNode("first", settings);
        first.Start();
        await first.WaitReadyAsync();
        var root = await first.Client().GetByteArrayAsync("/ca/root.crt");
        var issuing = await first.Client().GetByteArrayAsync("/ca/issuing.crt");
        Assert.False(Directory.Exists(Path.Combine(first.DataDirectory, "ca")), "the CA lives in the database, not on the node's disk");

        await using var joining = new CertPortalNode("joining", settings);
        joining.Start();
        await joining.WaitReadyAsync();
        Assert.Equal(root, await joining.Client().GetByteArrayAsync("/ca/root.crt"));
        Assert.Equal(issuing, await joining.Client().GetByteArrayAsync("/ca/issuing.crt"));

        // A certificate issued through the new node chains to the one CA.
        using var admin = joining.Client(admin: true);
        var token = await (await admin.PostAsJsonAsync("/api/v1/tokens", new { email = "join@example.test", displayName = "Join", profile = "signing", validHours = 1 }))
            .Content.ReadFromJsonAsync<TokenResponse>(Http.Json);
        var csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem("join@example.test");
        var enrolled = await joining.Client().PostAsJsonAsync("/api/v1/enrollments", new { token = token!.Token, csr });
        await Http.EnsureStatus(enrolled, HttpStatusCode.Created);
        var cert = X509Certificate2.CreateFromPem((await enrolled.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!.CertificatePem);
        Assert.Equal(X509CertificateLoader.LoadCertificate(issuing).Subject, cert.Issuer);

        // A node that still has a CA of its own on disk must not serve it beside the database's.
        await using var stranger = new CertPortalNode("stranger", settings);
        LegacyCa.Write(stranger.DataDirectory, "Stranger");
        stranger.Start();
        Assert.NotEqual(0, await stranger.WaitForExitAsync());
        Assert.Contains("is not the root CA in the database", stranger.Output);

        // Without the passphrase the CA was created with, a node cannot open the CA: it says which setting is wrong.
        await using var wrongPassphrase = new CertPortalNode("wrong-passphrase", new Dictionary<string, string>(settings) { ["Ca:KeyPassphrase"] = "another-passphrase-0123456" });
        wrongPassphrase.Start();
        Assert.NotEqual(0, await wrongPassphrase.WaitForExitAsync());
        Assert.Contains("CertPortal:Ca:KeyPassphrase", wrongPassphrase.Output);
    }

    [Fact]
    public async Task The_ca_of_a_single_node_installation_is_imported_into_an_empty_database()
    {
        await using var node = new CertPortalNode("legacy", OnNewDatabase());
        var (root, issuing) = LegacyCa.Write(node.DataDirectory, "Legacy");
        node.Start();
        await node.WaitReadyAsync();
        Assert.Equal(root, await node.Client().GetByteArrayAsync("/ca/root.crt"));
        Assert.Equal(issuing, await node.Client().GetByteArrayAsync("/ca/issuing.crt"));
    }
}

/// <summary>The files a single-node installation kept in DataDirectory/ca before the CA moved into the database.</summary>
internal static class LegacyCa
{
    public static (byte[] Root, byte[] Issuing) Write(string dataDirectory, string name)
    {
        var dir = Directory.CreateDirectory(Path.Combine(dataDirectory, "ca")).FullName;
        var now = DateTimeOffset.UtcNow;
        var pbe = new PbeParameters(PbeEncryptionAlgorithm.Aes256Cbc, HashAlgorithmName.SHA256, 1000);

        using var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var rootRequest = new CertificateRequest($"CN={name} Root CA, O=CertPortal", rootKey, HashAlgorithmName.SHA256);
        rootRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        rootRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        var rootSki = new X509SubjectKeyIdentifierExtension(rootRequest.PublicKey, false);
        rootRequest.CertificateExtensions.Add(rootSki);
        using var root = rootRequest.CreateSelfSigned(now.AddMinutes(-5), now.AddYears(5));

        using var issuingKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var issuingRequest = new CertificateRequest($"CN={name} Issuing CA, O=CertPortal", issuingKey, HashAlgorithmName.SHA256);
        issuingRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        issuingRequest.CertificateExtensions.Add(new X509KeyUsageExtension(
            X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign | X509KeyUsageFlags.DigitalSignature, true));
        issuingRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(issuingRequest.PublicKey, false));
        issuingRequest.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromSubjectKeyIdentifier(rootSki));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F; // a positive INTEGER
        using var issuing = issuingRequest.Create(root, now.AddMinutes(-5), now.AddYears(4), serial);

        File.WriteAllText(Path.Combine(dir, "root.key"), rootKey.ExportEncryptedPkcs8PrivateKeyPem(CertPortalNode.Passphrase, pbe));
        File.WriteAllText(Path.Combine(dir, "root.crt"), root.ExportCertificatePem());
        File.WriteAllText(Path.Combine(dir, "issuing.key"), issuingKey.ExportEncryptedPkcs8PrivateKeyPem(CertPortalNode.Passphrase, pbe));
        File.WriteAllText(Path.Combine(dir, "issuing.crt"), issuing.ExportCertificatePem());
        return (root.RawData, issuing.RawData);
    }
}
