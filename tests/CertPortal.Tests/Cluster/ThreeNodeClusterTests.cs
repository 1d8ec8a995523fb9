using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using CertPortal.Tests.Api;
using CertPortal.Tests.Infrastructure;
using Npgsql;
using Xunit.Abstractions;

namespace CertPortal.Tests.Cluster;

/// <summary>Three node processes behind nginx on one PostgreSQL database, publishing to one slapd through a proxy that
/// can add latency. Enrolment, revocation, hold and release go to different nodes, tokens are raced from all nodes at
/// once, a node is killed with SIGKILL while it is answering enrolments, and the directory is stopped and then slow for
/// part of the run; one more way to node b breaks every connection as its answer arrives. Clients behave as real ones:
/// an answer lost (reset connection, or nginx's 502 for the dead node) is repeated on another node, an enrolment with
/// the same token and CSR. After draining, every certificate issued is held
/// by exactly the client that asked for it with the status it was told, LDAP holds exactly what the database says, and
/// every node serves one CA and CRLs listing every revoked certificate, with increasing numbers and thisUpdate.</summary>
public sealed class ThreeNodeClusterTests(ITestOutputHelper output) : IAsyncLifetime, IDisposable
{
    private const string Database = "cluster";
    private readonly PostgresServer _postgres = new();
    private readonly Slapd _slapd = new();
    private LatencyProxy? _proxy;
    private LatencyProxy? _lossy;
    private readonly NginxBalancer _nginx = new();
    private readonly List<CertPortalNode> _nodes = [];
    private readonly HttpClient _http = AdminClient();
    /// <summary>Stops the CRL watcher: after draining, or when the test fails before that.</summary>
    private readonly CancellationTokenSource _monitor = new();

    /// <summary>Serial -> what the client that enrolled holds: its mailbox, and the status its last change was answered with.</summary>
    private readonly ConcurrentDictionary<string, Held> _held = new();
    /// <summary>Every issuing CRL fetched during the run, from nginx and from each node, by CRL number.</summary>
    private readonly ConcurrentDictionary<long, byte[]> _crlsSeen = new();
    /// <summary>Enrolments under way per target, so the crash hits a node while it is answering one.</summary>
    private readonly ConcurrentDictionary<string, int> _enrolling = new();
    private int _sequence, _repeated, _collected, _crlFetches;
    private bool _disposed;

    private sealed record Held(string Email, string Status);

    public async Task InitializeAsync()
    {
        try
        {
            await StartClusterAsync();
        }
        catch
        {
            // Stop what did start: the test fails either way, and nothing may outlive it.
            await DisposeAsync();
            throw;
        }
    }

    private async Task StartClusterAsync()
    {
        await Task.WhenAll(_postgres.InitializeAsync(), _slapd.InitializeAsync());
        _proxy = new LatencyProxy(_slapd.Port);
        var settings = new Dictionary<string, string>
        {
            ["Database:Provider"] = "Postgres",
            ["Database:ConnectionString"] = _postgres.ConnectionString(Database),
            ["PublicBaseUrl"] = _nginx.BaseUrl,
            ["Crl:PublishDelay"] = "00:00:01",
            // Multipurpose policy: S/MIME BR 7.2.2 allow certificateHold only there (strict certificates refuse holds).
            ["Issuance:PolicyOids:0"] = "2.23.140.1.5.1.2",
            ["Directory:Url"] = $"ldap://127.0.0.1:{_proxy.Port}",
            ["Directory:BindDn"] = Slapd.RootDn,
            ["Directory:BindPassword"] = Slapd.RootPassword,
            ["Directory:PeopleBaseDn"] = Slapd.PeopleDn,
            ["Directory:PkiEntryDn"] = Slapd.PkiDn,
            ["Directory:PollInterval"] = "00:00:00.200",
            ["Directory:RetryBaseDelay"] = "00:00:00.200",
            ["Directory:RetryMaxDelay"] = "00:00:01",
            ["Directory:TimeoutSeconds"] = "3",
            // Short, so the killed node's claimed outbox rows pass to the others within the run.
            ["Directory:ClaimLease"] = "00:00:08",
        };
        foreach (var name in new[] { "a", "b", "c" }) _nodes.Add(new CertPortalNode(name, settings));
        foreach (var n in _nodes) n.Start();
        await Task.WhenAll(_nodes.Select(n => n.WaitReadyAsync()));
        await _nginx.StartAsync(_nodes.Select(n => n.Port));
        _lossy = new LatencyProxy(_nodes[1].Port) { DropAnswers = true };
    }

    public async Task DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        await _monitor.CancelAsync();
        foreach (var n in _nodes) await n.DisposeAsync();
        await _nginx.StopAsync();
        _proxy?.Dispose();
        _lossy?.Dispose();
        await _slapd.DisposeAsync();
        await _postgres.DisposeAsync();
    }

    public void Dispose()
    {
        _http.Dispose();
        _monitor.Dispose();
    }

    [Fact]
    public async Task Three_nodes_behind_nginx_lose_nothing_through_a_crash_a_directory_outage_and_latency()
    {
        var clock = Stopwatch.StartNew();
        var watching = WatchCrlsAsync(_monitor.Token);
        var (a, b, c) = (_nodes[0], _nodes[1], _nodes[2]);

        // 1. Everything spread over the nodes, with 20-way races for single tokens.
        await RunWorkloadAsync(certificates: 16, races: 2, [a, b, c]);

        // 2. The directory goes away; node c is killed while it answers an enrolment; the directory comes back slow.
        await _slapd.StopAsync();
        var during = RunWorkloadAsync(certificates: 16, races: 2, [a, b, c]);
        await KillWhileEnrollingAsync(c);
        await Task.Delay(1500);
        await _slapd.StartAsync();
        _proxy!.Latency = TimeSpan.FromMilliseconds(250);
        await during;
        await RunWorkloadAsync(certificates: 8, races: 1, [a, b]);
        _proxy.Latency = TimeSpan.Zero;

        // 3. Node c comes back with an empty memory and takes its share again.
        c.Start();
        await c.WaitReadyAsync();
        await RunWorkloadAsync(certificates: 8, races: 1, [a, b, c]);

        // 4. Drain: the outbox is empty and no CRL is owed; then every node serves the latest CRL.
        await DrainAsync();
        await _monitor.CancelAsync();
        await watching;
        output.WriteLine($"{_held.Count} certificates; {_repeated} requests repeated after a lost answer, {_collected} of them enrolments " +
                         $"that had committed (collected with the same token and CSR); {_crlsSeen.Count} CRLs seen in {_crlFetches} fetches; {clock.Elapsed}");

        var certificates = await CertificatesAsync();
        AssertNothingLostOrDuplicated(certificates);
        AssertDirectoryEqualsDatabase(certificates);
        await AssertOneCaAndCompleteCrlsAsync(certificates);
        await AssertCrlsSignedOnceWithIncreasingNumbersAndThisUpdateAsync();

        // A console session made through one node works on the others, also when nginx picks the node.
        const string password = "a long console password 4 cluster";
        await Http.EnsureStatus(await _http.PostAsJsonAsync(a.BaseUrl + "/api/v1/accounts",
            new { name = "nora", displayName = "Nora", role = "administrator", password }), HttpStatusCode.Created);
        Assert.Equal(HttpStatusCode.OK, await ConsoleSession.AdminPageAcrossNodesAsync(a.BaseUrl, b.BaseUrl, c.BaseUrl, "nora", password));
        Assert.Equal(HttpStatusCode.OK, await ConsoleSession.AdminPageAcrossNodesAsync(c.BaseUrl, _nginx.BaseUrl, b.BaseUrl, "nora", password));
    }

    /// <summary>Each certificate: token on one target, enrolment on the next, then revoke / hold / hold+release on the
    /// following ones (targets: the given nodes directly, nginx, and the path to node b that loses every answer). Races:
    /// one token, 20 clients with keys of their own spread over the targets; exactly one gets the certificate.</summary>
    private async Task RunWorkloadAsync(int certificates, int races, CertPortalNode[] nodes)
    {
        var targets = nodes.Select(n => n.BaseUrl).Append(_nginx.BaseUrl).Append($"http://127.0.0.1:{_lossy!.Port}").ToArray();
        var work = Enumerable.Range(0, certificates).Select(async _ =>
        {
            var i = Interlocked.Increment(ref _sequence);
            var email = $"person{i}@example.test";
            var token = await CreateTokenAsync(targets, i, email);
            var serial = await EnrollAsync(targets, i + 1, token, email, racing: false);
            Assert.NotNull(serial);
            switch (i % 4)
            {
                case 0: await ChangeAsync(targets, i + 2, serial, "revoke", "keyCompromise", "revoked"); break;
                case 1: await ChangeAsync(targets, i + 2, serial, "revoke", "certificateHold", "onHold"); break;
                case 2:
                    await ChangeAsync(targets, i + 2, serial, "revoke", "certificateHold", "onHold");
                    await ChangeAsync(targets, i + 3, serial, "release", null, "valid");
                    break;
            }
        });
        var raceWork = Enumerable.Range(0, races).Select(async _ =>
        {
            var i = Interlocked.Increment(ref _sequence);
            var email = $"race{i}@example.test";
            var token = await CreateTokenAsync(targets, i, email);
            var winners = await Task.WhenAll(Enumerable.Range(0, 20).Select(async k =>
                await EnrollAsync(targets, i + k, token, email, racing: true) is null ? 0 : 1));
            Assert.True(winners.Sum() == 1, $"a token raced 20 times gave {winners.Sum()} certificates");
        });
        await Task.WhenAll(work.Concat(raceWork));
    }

    /// <summary>kill -9 on <paramref name="node"/> while it is answering an enrolment (one sent to it directly; nginx
    /// may be forwarding others to it too), so at least one client loses its answer.</summary>
    private async Task KillWhileEnrollingAsync(CertPortalNode node)
    {
        var deadline = Stopwatch.StartNew();
        while (_enrolling.GetValueOrDefault(node.BaseUrl) == 0)
        {
            if (deadline.Elapsed > TimeSpan.FromSeconds(60)) throw new TimeoutException($"no enrolment reached node {node.Name}");
            await Task.Delay(5);
        }
        node.Kill();
    }

    private static HttpClient AdminClient()
    {
        var client = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", CertPortalNode.AdminKey);
        return client;
    }

    /// <summary>Sends as a client does that loses an answer: when the connection breaks, the request times out, or
    /// nginx answers 502/504 (the node it had passed the request to died; nginx does not pass a POST that reached a node
    /// on to another), it waits a moment and sends the same request to the next target. Returns the answer and whether
    /// it came for a repetition.</summary>
    private async Task<(HttpResponseMessage Response, bool Repeated)> SendAsync(string[] targets, int first,
        Func<string, Task<HttpResponseMessage>> send, bool enrolment = false)
    {
        for (var attempt = 0; ; attempt++)
        {
            var target = targets[(first + attempt) % targets.Length];
            if (enrolment) _enrolling.AddOrUpdate(target, 1, (_, n) => n + 1);
            string lost;
            try
            {
                var response = await send(target);
                if (response.StatusCode is not (HttpStatusCode.BadGateway or HttpStatusCode.GatewayTimeout)) return (response, attempt > 0);
                lost = $"{(int)response.StatusCode} from nginx";
            }
            catch (HttpRequestException e)
            {
                lost = e.Message;
            }
            catch (TaskCanceledException e)
            {
                lost = e.Message;
            }
            finally
            {
                if (enrolment) _enrolling.AddOrUpdate(target, 0, (_, n) => n - 1);
            }
            Interlocked.Increment(ref _repeated);
            if (attempt == 8) throw new Xunit.Sdk.XunitException($"no answer after {attempt + 1} attempts; last from {target}: {lost}");
            await Task.Delay(300);
        }
    }

    /// <summary>A token; a lost answer makes a second token (the first one stays unused until it expires).</summary>
    private async Task<string> CreateTokenAsync(string[] targets, int first, string email)
    {
        var (r, _) = await SendAsync(targets, first, t => _http.PostAsJsonAsync(t + "/api/v1/tokens",
            new { email, displayName = "Cluster Person", profile = "dual", validHours = 2 }));
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        return (await r.Content.ReadFromJsonAsync<TokenResponse>(Http.Json))!.Token;
    }

    /// <summary>The serial of the certificate this client holds; null when another client of a race spent the token (403).
    /// One key per client: a repetition sends the same CSR, and collects the certificate if the lost attempt committed.</summary>
    private async Task<string?> EnrollAsync(string[] targets, int first, string token, string email, bool racing)
    {
        var csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email);
        var (r, repeated) = await SendAsync(targets, first, t => _http.PostAsJsonAsync(t + "/api/v1/enrollments", new { token, csr }), enrolment: true);
        if (r.StatusCode == HttpStatusCode.Forbidden)
        {
            // Without a race nobody else has the token: a 403 here is the locked-out client of issue 12.
            Assert.True(racing, $"{email}: the only client of its token was refused ({(repeated ? "after a lost answer" : "at once")}): {await r.Content.ReadAsStringAsync()}");
            return null;
        }
        if (r.StatusCode == HttpStatusCode.OK)
        {
            Assert.True(repeated, $"{email}: 200 (collected) for a first attempt with a fresh key");
            Interlocked.Increment(ref _collected);
        }
        else await Http.EnsureStatus(r, HttpStatusCode.Created);
        var serial = (await r.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!.SerialNumber;
        Assert.True(_held.TryAdd(serial, new Held(email, "valid")), $"serial {serial} handed to two clients");
        return serial;
    }

    /// <summary>Revoke, hold or release. Revoking again is answered 200; a release repeated after a lost answer finds the
    /// certificate no longer on hold (409), which tells the client the release it sent was done.</summary>
    private async Task ChangeAsync(string[] targets, int first, string serial, string action, string? reason, string status)
    {
        var (r, repeated) = await SendAsync(targets, first, t => action == "revoke"
            ? _http.PostAsJsonAsync($"{t}/api/v1/certificates/{serial}/revoke", new { reason })
            : _http.PostAsync($"{t}/api/v1/certificates/{serial}/release", null));
        if (!(repeated && action == "release" && r.StatusCode == HttpStatusCode.Conflict)) await Http.EnsureStatus(r, HttpStatusCode.OK);
        _held[serial] = _held[serial] with { Status = status };
    }

    /// <summary>Fetches the issuing CRL from nginx and from every node, every 200 ms, keeping each one seen. A node must
    /// never serve an older CRL than it served before (nginx may: it alternates between nodes).</summary>
    private async Task WatchCrlsAsync(CancellationToken ct)
    {
        var sources = _nodes.Select(n => n.BaseUrl).Append(_nginx.BaseUrl).ToArray();
        var latest = new Dictionary<string, long>();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        while (!ct.IsCancellationRequested)
        {
            foreach (var source in sources)
            {
                byte[] der;
                try
                {
                    der = await http.GetByteArrayAsync(source + "/crl/issuing.crl", ct);
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested) { return; }
                catch (HttpRequestException) { continue; } // node c is down
                catch (TaskCanceledException) { continue; } // a node too busy to answer in time is no evidence either way
                Interlocked.Increment(ref _crlFetches);
                var number = Record(der);
                if (source != _nginx.BaseUrl)
                {
                    var before = latest.GetValueOrDefault(source);
                    Assert.True(number >= before, $"{source} served CRL {number} after CRL {before}");
                    latest[source] = number;
                }
            }
            try { await Task.Delay(200, ct); }
            catch (OperationCanceledException) { return; }
        }
    }

    /// <summary>Keeps a fetched CRL by its number; two different CRLs with one number would be two signers at once.</summary>
    private long Record(byte[] der)
    {
        var crl = ParsedCrl.Parse(der);
        var first = _crlsSeen.GetOrAdd(crl.Number, der);
        Assert.True(first.AsSpan().SequenceEqual(der), $"two different CRLs carry number {crl.Number}");
        return crl.Number;
    }

    private async Task DrainAsync()
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var queue = await _http.GetFromJsonAsync<JsonElement>(_nginx.BaseUrl + "/api/v1/directory/publications");
            var owed = await ScalarAsync("SELECT COUNT(*) FROM \"CrlChanges\"");
            if (queue.GetProperty("pending").GetInt32() == 0 && queue.GetProperty("failing").GetInt32() == 0 && owed == 0) break;
            if (deadline.Elapsed > TimeSpan.FromSeconds(90)) throw new TimeoutException($"not drained: {owed} CRL changes owed, outbox {queue}");
            await Task.Delay(250);
        }
        await Task.Delay(1500); // one Crl:CheckInterval and then some: every node has loaded the latest CRL
    }

    private sealed record Certificate(string SerialNumber, string Email, string Status, string Fingerprint);

    private async Task<Dictionary<string, Certificate>> CertificatesAsync()
    {
        var all = new Dictionary<string, Certificate>();
        for (var page = 1; ; page++)
        {
            var result = await _http.GetFromJsonAsync<JsonElement>($"{_nginx.BaseUrl}/api/v1/certificates?pageSize=200&page={page}");
            var items = result.GetProperty("items").EnumerateArray().ToList();
            foreach (var c in items)
                all[c.GetProperty("serialNumber").GetString()!] = new Certificate(c.GetProperty("serialNumber").GetString()!, c.GetProperty("email").GetString()!,
                    c.GetProperty("status").GetString()!, c.GetProperty("sha256Fingerprint").GetString()!);
            if (items.Count < 200) return all;
        }
    }

    /// <summary>Every certificate the database holds reached the client that asked for it (none committed and never
    /// collected), with the status that client was last told; one certificate per mailbox (one token each).</summary>
    private void AssertNothingLostOrDuplicated(Dictionary<string, Certificate> certificates)
    {
        Assert.True(_held.Count >= 50, $"the workload issued {_held.Count} certificates");
        Assert.True(_collected > 0, "no enrolment was collected after a lost answer: the retry path was not exercised");
        foreach (var (serial, held) in _held)
        {
            Assert.True(certificates.TryGetValue(serial, out var recorded), $"{serial} was handed to {held.Email} but is not recorded");
            Assert.Equal(held.Email, recorded.Email);
            Assert.True(held.Status == recorded.Status, $"{serial} of {held.Email}: the client was told {held.Status}, the database says {recorded.Status}");
        }
        var unheld = certificates.Keys.Except(_held.Keys).ToList();
        Assert.True(unheld.Count == 0, $"issued but never handed to a client: {string.Join(", ", unheld.Select(s => $"{s} ({certificates[s].Email})"))}");
        var twice = certificates.Values.GroupBy(c => c.Email).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        Assert.True(twice.Count == 0, $"more than one certificate for {string.Join(", ", twice)}");
    }

    /// <summary>Each mailbox's entry holds exactly its valid certificates (no revoked or held one), in userCertificate and
    /// in userSMIMECertificate (the PKCS#7 that Outlook reads first), and the issuing CA's entry holds the latest CRL.</summary>
    private void AssertDirectoryEqualsDatabase(Dictionary<string, Certificate> certificates)
    {
        var published = new Dictionary<string, (HashSet<string> Certificates, HashSet<string> Smime)>(StringComparer.OrdinalIgnoreCase);
        foreach (var entry in _slapd.Search(Slapd.PeopleDn, "(mail=*)", "mail", "userCertificate;binary", "userSMIMECertificate").Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            var mail = Slapd.TextValues(entry, "mail").FirstOrDefault();
            if (mail is null) continue;
            published[mail] = (Fingerprints(Slapd.BinaryValues(entry, "userCertificate;binary")),
                Fingerprints(Slapd.BinaryValues(entry, "userSMIMECertificate").SelectMany(CertificatesIn)));
        }
        foreach (var mailbox in certificates.Values.GroupBy(c => c.Email))
        {
            var expected = mailbox.Where(c => c.Status == "valid").Select(c => c.Fingerprint.Replace(":", "")).ToHashSet(StringComparer.OrdinalIgnoreCase);
            var (inLdap, inSmime) = published.GetValueOrDefault(mailbox.Key, ([], []));
            var states = string.Join(", ", mailbox.Select(c => $"{c.SerialNumber} {c.Status}"));
            Assert.True(expected.SetEquals(inLdap), $"{mailbox.Key}: userCertificate holds {inLdap.Count} certificates, the database {expected.Count} valid ones ({states})");
            Assert.True(expected.SetEquals(inSmime), $"{mailbox.Key}: userSMIMECertificate carries {inSmime.Count} certificates, the database {expected.Count} valid ones ({states})");
        }
        Assert.Empty(published.Where(p => p.Value.Certificates.Count + p.Value.Smime.Count > 0).Select(p => p.Key)
            .Except(certificates.Values.Select(c => c.Email), StringComparer.OrdinalIgnoreCase));

        var pki = _slapd.Search(Slapd.PkiDn, "(objectClass=*)", "certificateRevocationList;binary");
        var crlInLdap = Slapd.BinaryValues(pki, "certificateRevocationList;binary");
        Assert.Single(crlInLdap);
        Assert.Equal(_crlsSeen.Keys.Max(), ParsedCrl.Parse(crlInLdap[0]).Number);
    }

    private static HashSet<string> Fingerprints(IEnumerable<byte[]> ders) =>
        ders.Select(der => Convert.ToHexString(SHA256.HashData(der))).ToHashSet(StringComparer.OrdinalIgnoreCase);

    private static IEnumerable<byte[]> CertificatesIn(byte[] pkcs7)
    {
        var cms = new System.Security.Cryptography.Pkcs.SignedCms();
        cms.Decode(pkcs7);
        return cms.Certificates.Select(c => c.RawData).ToList();
    }

    /// <summary>Every node serves the same root and issuing CA, and a CRL that openssl verifies against that issuing CA,
    /// listing every revoked and held certificate and no valid one.</summary>
    private async Task AssertOneCaAndCompleteCrlsAsync(Dictionary<string, Certificate> certificates)
    {
        Assert.Equal(2, await ScalarAsync("SELECT COUNT(*) FROM \"SharedSecrets\" WHERE \"Name\" LIKE 'ca:%'"));
        var listed = certificates.Values.Where(c => c.Status is "revoked" or "onHold").Select(c => c.SerialNumber).ToList();
        var valid = certificates.Values.Where(c => c.Status == "valid").Select(c => c.SerialNumber).ToList();
        Assert.NotEmpty(listed);
        Assert.NotEmpty(valid);
        var root = await _http.GetByteArrayAsync(_nodes[0].BaseUrl + "/ca/root.crt");
        var issuing = await _http.GetByteArrayAsync(_nodes[0].BaseUrl + "/ca/issuing.crt");
        using var dir = new ToolDir("cluster-crl");
        var caFile = dir.Write("issuing.pem", PemEncoding.WriteString("CERTIFICATE", issuing));
        var rootFile = dir.Write("root.pem", PemEncoding.WriteString("CERTIFICATE", root));
        Tool.Run("openssl", ["verify", "-CAfile", rootFile, caFile]).EnsureSuccess();
        foreach (var node in _nodes)
        {
            Assert.Equal(root, await _http.GetByteArrayAsync(node.BaseUrl + "/ca/root.crt"));
            Assert.Equal(issuing, await _http.GetByteArrayAsync(node.BaseUrl + "/ca/issuing.crt"));
            var der = await _http.GetByteArrayAsync(node.BaseUrl + "/crl/issuing.crl");
            Assert.Equal(_crlsSeen.Keys.Max(), Record(der));
            var crlFile = dir.Write($"issuing-{node.Name}.crl", der);
            var check = Tool.Run("openssl", ["crl", "-inform", "DER", "-in", crlFile, "-CAfile", caFile, "-noout", "-text"]).EnsureSuccess();
            Assert.Contains("verify OK", check.Output);
            Assert.All(listed, s => Assert.Contains($"Serial Number: {s}", check.Stdout));
            Assert.All(valid, s => Assert.DoesNotContain($"Serial Number: {s}", check.Stdout));
        }
    }

    /// <summary>Each CRL signed (one audit record per signature, by whichever node signed it) has a number of its own, and
    /// the CRLs seen during the run have thisUpdate strictly increasing with their number.</summary>
    private async Task AssertCrlsSignedOnceWithIncreasingNumbersAndThisUpdateAsync()
    {
        var signed = await ScalarAsync("SELECT COUNT(*) FROM \"AuditEvents\" WHERE \"Target\" LIKE 'crl:issuing:%'");
        var distinct = await ScalarAsync("SELECT COUNT(DISTINCT \"Target\") FROM \"AuditEvents\" WHERE \"Target\" LIKE 'crl:issuing:%'");
        Assert.Equal(signed, distinct);
        Assert.True(_crlsSeen.Count >= 4, $"saw {_crlsSeen.Count} issuing CRLs during the run");
        var seen = _crlsSeen.OrderBy(kv => kv.Key).Select(kv => ParsedCrl.Parse(kv.Value)).ToList();
        for (var i = 1; i < seen.Count; i++)
            Assert.True(seen[i].ThisUpdate > seen[i - 1].ThisUpdate,
                $"CRL {seen[i].Number} thisUpdate {seen[i].ThisUpdate:O} is not after CRL {seen[i - 1].Number}'s {seen[i - 1].ThisUpdate:O}");
    }

    private async Task<long> ScalarAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(_postgres.ConnectionString(Database));
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return Convert.ToInt64(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
