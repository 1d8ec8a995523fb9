using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using CertPortal;
using CertPortal.Authority;
using CertPortal.Revocation;

// CertPortal benchmark: the signing hot path, end-to-end enrollments over HTTP, CRL signing, memory.
// Usage: dotnet run -c Release --project bench/CertPortal.Bench -- [--quick]
//        ... -- --mixed-load URL SECONDS PID     8 clients enrol, look up, revoke, ask OCSP and fetch the CRL of the service at
//                                        URL (process PID) for SECONDS; its RSS every 10 s (bench/compare.sh --memory)
//        ... -- --seed-certificates N            N issued certificates for revocation runs (bench/compare.sh --revocation), in the
//                                        database the CertPortal__* environment variables name (the service's own settings)
//        ... -- --serve-bytes FILE URL [OCSP]   the look-up's reference for bench/compare.sh: a bare Kestrel minimal API
//                                        answering GET /api/v1/directory/{email}/certificates with FILE's bytes
//                                        (and GET /ocsp/{request} with the bytes of the file OCSP)
//        ... -- --crl N [DIR]                  a CRL of N entries signed from the database (DIR keeps the seeded database)
//        ... -- --delta-crl N CHANGES [DIR]    then a delta CRL of CHANGES revocations since that base, from the changes and,
//                                        as the reference in the same run, from every revoked row merged with the base
//        ... -- --csrs N PREFIX FILE           N P-256 CSRs for bench/compare.sh's enrollment rows, one a line in FILE:
//                                        the mailbox PREFIX<i>@example.com (i = 1..N, also the CSR's CN) and the PEM
//                                        as a JSON string
if (args is ["--serve-bytes", var bodyFile, var listenUrl, .. var more] && more.Length <= 1)
{
    var body = await File.ReadAllBytesAsync(bodyFile);
    var web = WebApplication.CreateSlimBuilder();
    web.WebHost.UseUrls(listenUrl);
    web.Logging.ClearProviders();
    var baseline = web.Build();
    baseline.MapGet("/api/v1/directory/{email}/certificates", () => Results.Bytes(body, "application/json"));
    if (more is [var ocspFile])
    {
        var ocsp = await File.ReadAllBytesAsync(ocspFile);
        baseline.MapGet("/ocsp/{**request}", () => Results.Bytes(ocsp, "application/ocsp-response"));
    }
    await baseline.RunAsync();
    return;
}
if (args is ["--csrs", var csrCount, var csrPrefix, var csrFile])
{
    await WriteCsrsAsync(int.Parse(csrCount, System.Globalization.CultureInfo.InvariantCulture), csrPrefix, csrFile);
    return;
}
if (args is ["--seed-certificates", var seedCount])
{
    await SeedCertificatesAsync(int.Parse(seedCount, System.Globalization.CultureInfo.InvariantCulture));
    return;
}
if (args is ["--mixed-load", var mixedUrl, var mixedSeconds, var mixedPid])
{
    await MixedLoadAsync(new Uri(mixedUrl), int.Parse(mixedSeconds, System.Globalization.CultureInfo.InvariantCulture),
        int.Parse(mixedPid, System.Globalization.CultureInfo.InvariantCulture));
    return;
}
if (args is ["--crl", var crlEntries, .. var crlDir] && crlDir.Length <= 1)
{
    Console.WriteLine(await BigCrlAsync(int.Parse(crlEntries, System.Globalization.CultureInfo.InvariantCulture), crlDir.FirstOrDefault(), 0));
    return;
}
if (args is ["--delta-crl", var baseEntries, var deltaChanges, .. var deltaDir] && deltaDir.Length <= 1)
{
    Console.WriteLine(await BigCrlAsync(int.Parse(baseEntries, System.Globalization.CultureInfo.InvariantCulture), deltaDir.FirstOrDefault(),
        int.Parse(deltaChanges, System.Globalization.CultureInfo.InvariantCulture)));
    return;
}
var quick = args.Contains("--quick");
var rows = new List<(string What, string Result)>();
var temp = Directory.CreateTempSubdirectory("certportal-bench");
try
{
    // 1. Hot path: CertificateIssuer (lint copy + real signature) for pre-made CSR keys.
    foreach (var issuingAlgorithm in new[] { "RSA-3072", "EC-P256" })
    {
        var options = new CertPortalOptions { DataDirectory = Path.Combine(temp.FullName, issuingAlgorithm) };
        options.Ca.KeyPassphrase = "bench-passphrase-0123";
        options.Ca.IssuingKeyAlgorithm = issuingAlgorithm;
        options.Ca.RootKeyAlgorithm = issuingAlgorithm == "EC-P256" ? "EC-P384" : "RSA-4096";
        var urls = new CaUrls("http://pki.example.test");
        var (root, issuingCa) = new CaKeyStore(options, TimeProvider.System).Create(urls);
        using var ca = new CaHierarchy(root, issuingCa, urls);
        var issuer = new CertificateIssuer(ca, options);
        foreach (var subscriber in new[] { "EC-P256", "RSA-2048" })
        {
            var keys = Enumerable.Range(0, 16).Select(_ => SubscriberKeyFor(subscriber)).ToList();
            var n = quick ? 400 : 4000;
            var one = Measure(n, 1, i => _ = issuer.Issue(Order(keys[i % keys.Count], i)));
            var all = Measure(n, Environment.ProcessorCount, i => _ = issuer.Issue(Order(keys[i % keys.Count], i)));
            rows.Add(($"Issue (issuing CA {issuingAlgorithm}, subscriber {subscriber}), 1 thread", $"{one:N0} certificates/s"));
            rows.Add(($"Issue (issuing CA {issuingAlgorithm}, subscriber {subscriber}), {Environment.ProcessorCount} threads", $"{all:N0} certificates/s"));
        }

        // 3. CRL signing with many entries (CrlEncoder, as CrlSigner uses it), 100,000 in the quick run too: the
        //    size a large organisation reaches, and where .NET's CertificateRevocationListBuilder took 20+ s.
        foreach (var entries in quick ? new[] { 10_000, 100_000 } : new[] { 10_000, 100_000, 1_000_000 })
        {
            var list = new List<CrlEntry>(entries);
            for (var i = 0; i < entries; i++) list.Add(new CrlEntry(SerialNumber.New(DateTimeOffset.UtcNow), DateTimeOffset.UtcNow, X509RevocationReason.KeyCompromise));
            var sw = Stopwatch.StartNew();
            var crl = CrlEncoder.Build(ca.Issuing, 1, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddDays(7), list);
            sw.Stop();
            rows.Add(($"CRL with {entries:N0} entries (issuing CA {issuingAlgorithm})", $"{sw.Elapsed.TotalMilliseconds:N0} ms, {crl.Length / 1024:N0} KiB"));
        }
    }

    // 2. End to end: the real service (SQLite, Kestrel on loopback), token + enrollment per certificate.
    rows.AddRange(await EndToEndAsync(temp.FullName, quick));
    rows.Add(("Peak working set of this process", $"{Process.GetCurrentProcess().PeakWorkingSet64 / (1024 * 1024):N0} MiB"));
}
finally
{
    temp.Delete(recursive: true);
}

Console.WriteLine($"| CertPortal benchmark ({(quick ? "quick" : "full")}, {Environment.ProcessorCount} cores, .NET {Environment.Version}) | result |");
Console.WriteLine("|---|---|");
foreach (var (what, result) in rows) Console.WriteLine($"| {what} | {result} |");
return;

static double Measure(int n, int threads, Action<int> work)
{
    for (var i = 0; i < Math.Min(50, n); i++) work(i); // warm-up
    var sw = Stopwatch.StartNew();
    Parallel.For(0, n, new ParallelOptions { MaxDegreeOfParallelism = threads }, work);
    return n / sw.Elapsed.TotalSeconds;
}

// compare.sh made its CSRs with one openssl process each (~5 ms of CPU apiece); at the request counts wrk can drive
// that took longer than the rows it fed. Here a key and a CSR cost a fraction of a millisecond.
static async Task WriteCsrsAsync(int n, string prefix, string file)
{
    var lines = new string[n];
    Parallel.For(0, n, i =>
    {
        var mailbox = $"{prefix}{i + 1}@example.com";
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var pem = new CertificateRequest($"CN={mailbox}", key, HashAlgorithmName.SHA256).CreateSigningRequestPem();
        // A PEM is base64, dashes, spaces and line breaks: only the line breaks need escaping in a JSON string.
        lines[i] = $"{mailbox} \"{pem.ReplaceLineEndings("\\n")}\\n\"";
    });
    await File.WriteAllLinesAsync(file, lines);
}

static SubscriberKey SubscriberKeyFor(string algorithm)
{
    using AsymmetricAlgorithm key = algorithm == "RSA-2048" ? RSA.Create(2048) : ECDsa.Create(ECCurve.NamedCurves.nistP256);
    if (!SubscriberKey.TryAccept(new PublicKey(key), out var accepted, out var error)) throw new InvalidOperationException(error);
    return accepted;
}

static CertificateOrder Order(SubscriberKey key, int i) =>
    new($"user{i}@example.test", $"User {i}", CertificateProfileName.Dual, key, SerialNumber.New(DateTimeOffset.UtcNow),
        DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddDays(365));

// A delta CRL against the complete CRL just signed, for CHANGES certificates revoked since (rows and their CrlChange rows in
// a transaction rolled back at the end, so a kept database stays as seeded): signed from the changes (what the publisher does),
// then, with a change of unknown scope added, from every revoked row merged with the base (what it did before), each three
// times; the medians side by side.
static async Task<string> DeltaCrlAsync(CertPortal.Data.CertPortalDbContext db, CrlSigner signer, CertPortal.Data.CrlRecord complete, int changes)
{
    await using var tx = await db.Database.BeginTransactionAsync();
    var now = DateTimeOffset.UtcNow;
    for (var i = 0; i < changes; i++)
    {
        var serial = SerialNumber.ToHex(SerialNumber.New(now));
        await db.Database.ExecuteSqlRawAsync("""
            INSERT INTO "Certificates" ("SerialNumber", "Email", "DisplayName", "Profile", "KeyAlgorithm", "SubjectDn", "NotBefore", "NotAfter",
              "IssuedAt", "Der", "SpkiSha256", "RevokedAt", "RevocationReason", "MailboxValidatedAt")
            VALUES ({0}, {1}, '', 'Signing', 'EC-P256', '', {2}, {3}, {2}, x'00', {4}, {5}, 'Superseded', {2})
            """, serial, $"changed{i}@example.com", now.AddDays(-1).UtcTicks, now.AddDays(365).UtcTicks, $"changed{i}", now.UtcTicks);
        await CertPortal.Data.DirectSql.InsertCrlChangeAsync(db, CertPortal.Authority.CertificateAuthority.IssuingName, now, CancellationToken.None, serial);
    }
    async Task<(double Seconds, double Cpu, int Entries)> SignAsync()
    {
        var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        var delta = await signer.SignAsync(db, CertPortal.Authority.CertificateAuthority.IssuingName, DateTimeOffset.UtcNow, "bench",
            CancellationToken.None, delta: true, knownComplete: (complete.Number, complete.Der));
        sw.Stop();
        db.ChangeTracker.Clear();
        return (sw.Elapsed.TotalSeconds, (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalSeconds, delta.EntryCount);
    }
    static (double Seconds, double Cpu, int Entries) Median(List<(double Seconds, double Cpu, int Entries)> runs) =>
        runs.OrderBy(r => r.Seconds).ElementAt(runs.Count / 2);
    var fromChanges = new List<(double, double, int)>();
    for (var i = 0; i < 3; i++) fromChanges.Add(await SignAsync());
    await CertPortal.Data.DirectSql.InsertCrlChangeAsync(db, CertPortal.Authority.CertificateAuthority.IssuingName, now, CancellationToken.None);
    var fromEveryRow = new List<(double, double, int)>();
    for (var i = 0; i < 3; i++) fromEveryRow.Add(await SignAsync());
    await tx.RollbackAsync();
    var (changed, merged) = (Median(fromChanges), Median(fromEveryRow));
    if (changed.Entries != changes || merged.Entries != changes)
        throw new InvalidOperationException($"the delta CRLs list {changed.Entries} and {merged.Entries} entries, not {changes}");
    return $"| delta CRL of {changes:N0} changes against that base (median of 3) | as the publisher signs it (from the changes, or past a " +
        $"fiftieth of the rows from every row) {changed.Seconds * 1000:N0} ms " +
        $"({changed.Cpu * 1000:N0} ms CPU); from every revoked row merged with the base {merged.Seconds * 1000:N0} ms ({merged.Cpu * 1000:N0} ms CPU): " +
        $"{merged.Seconds / changed.Seconds:N1} x the time |";
}

// N revoked certificates written straight into the service's database (one transaction, minimal rows: the CRL reads
// serial, revocation time and reason), then one CRL signed and stored as a revocation's publisher would. With DIR, the
// database is kept there and its rows reused by the next run with the same N (writing a million rows takes minutes;
// signing the CRL seconds), so changes to the signer can be compared back to back.
static async Task<string> BigCrlAsync(int n, string? keep, int deltaChanges)
{
    var temp = keep is null ? Directory.CreateTempSubdirectory("certportal-crl") : Directory.CreateDirectory(keep);
    var seeded = Path.Combine(temp.FullName, $"seeded-{n}");
    try
    {
        var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateBuilder(new Microsoft.AspNetCore.Builder.WebApplicationOptions
        {
            Args = [$"--CertPortal:DataDirectory={temp.FullName}", "--CertPortal:AdminApiKey=bench-admin-key-0123456789abcdef",
                "--CertPortal:Ca:KeyPassphrase=bench-passphrase-0123", "--Logging:LogLevel:Default=Warning"],
        });
        builder.AddCertPortal();
        await using var app = builder.Build();
        await app.InitializeCertPortalAsync();

        var now = DateTimeOffset.UtcNow;
        if (!File.Exists(seeded))
        {
            await using (var connection = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={Path.Combine(temp.FullName, "certportal.db")}"))
            {
                await connection.OpenAsync();
                await using var tx = await connection.BeginTransactionAsync();
                await using var insert = connection.CreateCommand();
                insert.CommandText = """
                    INSERT INTO "Certificates" ("SerialNumber", "Email", "DisplayName", "Profile", "KeyAlgorithm", "SubjectDn", "NotBefore", "NotAfter",
                      "IssuedAt", "Der", "SpkiSha256", "RevokedAt", "RevocationReason", "MailboxValidatedAt")
                    VALUES ($serial, $email, '', 'Signing', 'EC-P256', '', $notBefore, $notAfter, $notBefore, x'00', $spki, $revokedAt,
                      'KeyCompromise', $notBefore)
                    """;
                var serial = insert.Parameters.Add("$serial", Microsoft.Data.Sqlite.SqliteType.Text);
                var email = insert.Parameters.Add("$email", Microsoft.Data.Sqlite.SqliteType.Text);
                var spki = insert.Parameters.Add("$spki", Microsoft.Data.Sqlite.SqliteType.Text);
                insert.Parameters.AddWithValue("$notBefore", now.AddDays(-1).UtcTicks);
                insert.Parameters.AddWithValue("$notAfter", now.AddDays(365).UtcTicks);
                insert.Parameters.AddWithValue("$revokedAt", now.AddHours(-1).UtcTicks);
                for (var i = 0; i < n; i++)
                {
                    serial.Value = SerialNumber.ToHex(SerialNumber.New(DateTimeOffset.UtcNow));
                    email.Value = $"revoked{i}@example.com";
                    spki.Value = i.ToString("X64", System.Globalization.CultureInfo.InvariantCulture);
                    await insert.ExecuteNonQueryAsync();
                }
                await tx.CommitAsync();
                await File.WriteAllTextAsync(seeded, "");
            }
        }

        GC.Collect();
        var before = Process.GetCurrentProcess().WorkingSet64;
        // CPU time next to wall time: on a machine shared with other work, the wall time says more about the load.
        var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        var sw = Stopwatch.StartNew();
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortal.Data.CertPortalDbContext>();
        await using var signing = await db.Database.BeginTransactionAsync();
        var crl = await scope.ServiceProvider.GetRequiredService<CrlSigner>().SignAsync(db, CertPortal.Authority.CertificateAuthority.IssuingName,
            DateTimeOffset.UtcNow, "bench", CancellationToken.None);
        var signed = sw.Elapsed;
        await db.SaveChangesAsync();
        var saved = sw.Elapsed;
        await signing.CommitAsync();
        sw.Stop();
        var cpu = Process.GetCurrentProcess().TotalProcessorTime - cpuBefore;
        var peak = Process.GetCurrentProcess().PeakWorkingSet64;
        if (crl.EntryCount != n) throw new InvalidOperationException($"the CRL lists {crl.EntryCount} entries, not {n}");
        var complete = $"| CRL with {n:N0} entries: CrlSigner on SQLite (read the revoked rows, encode, sign RSA-3072) and its commit | " +
            $"{sw.Elapsed.TotalSeconds:N2} s ({cpu.TotalSeconds:N2} s CPU; {signed.TotalSeconds:N2} s to read, encode and sign, " +
            $"{(saved - signed).TotalSeconds:N2} s to write it, {(sw.Elapsed - saved).TotalSeconds:N2} s to commit), " +
            $"{crl.Der.Length / (1024 * 1024):N0} MiB; working set {before / (1024 * 1024):N0} MiB before, peak {peak / (1024 * 1024):N0} MiB |";
        return deltaChanges <= 0 ? complete : complete + "\n" + await DeltaCrlAsync(db, scope.ServiceProvider.GetRequiredService<CrlSigner>(), crl, deltaChanges);
    }
    finally
    {
        if (keep is null) temp.Delete(recursive: true);
    }
}

// N real certificates, each for its own new P-256 key, signed by the service's issuing CA with the product's issuer and
// inserted in batches (one transaction per batch) with the columns an enrollment writes; no tokens, audit or outbox
// rows, which revocation does not read. Issuing them over HTTP first would take longer than revoking them.
// Prints the serial numbers, one a line.
static async Task SeedCertificatesAsync(int n)
{
    var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateBuilder(new Microsoft.AspNetCore.Builder.WebApplicationOptions
    {
        Args = ["--Logging:LogLevel:Default=Warning"],
    });
    // Standard output carries only the serials: on a new PostgreSQL database EF Core logs its failed read of the
    // migrations table (an error it expects) before creating it, and those lines would be taken for serial numbers.
    builder.Logging.ClearProviders();
    builder.Logging.AddConsole(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
    builder.AddCertPortal();
    await using var app = builder.Build();
    await app.InitializeCertPortalAsync();
    var issuer = app.Services.GetRequiredService<CertificateIssuer>();
    var sw = Stopwatch.StartNew();
    const int batch = 2000;
    for (var start = 0; start < n; start += batch)
    {
        var rows = new CertPortal.Data.IssuedCertificate[Math.Min(batch, n - start)];
        var now = DateTimeOffset.UtcNow;
        Parallel.For(0, rows.Length, i =>
        {
            var number = start + i;
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            if (!SubscriberKey.TryAccept(new PublicKey(key), out var accepted, out var error)) throw new InvalidOperationException(error);
            var serial = SerialNumber.New(now);
            var signed = issuer.Issue(new CertificateOrder($"seed{number}@example.com", $"Seed {number}", CertificateProfileName.Signing, accepted, serial,
                now.AddMinutes(-1), now.AddDays(365)));
            rows[i] = new CertPortal.Data.IssuedCertificate
            {
                SerialNumber = SerialNumber.ToHex(serial), Email = $"seed{number}@example.com", DisplayName = $"Seed {number}",
                Profile = CertificateProfileName.Signing, KeyAlgorithm = accepted.Algorithm, SubjectDn = signed.Subject,
                NotBefore = signed.NotBefore, NotAfter = signed.NotAfter, IssuedAt = now, Der = signed.Der,
                SpkiSha256 = accepted.SpkiSha256,
            };
        });
        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortal.Data.CertPortalDbContext>();
        db.ChangeTracker.AutoDetectChangesEnabled = false;
        db.Certificates.AddRange(rows);
        await db.SaveChangesAsync();
        foreach (var row in rows) Console.Out.Write(row.SerialNumber + "\n");
    }
    Console.Error.WriteLine($"Seeded {n:N0} certificates in {sw.Elapsed.TotalSeconds:N1} s");
}

// The memory run: 8 clients loop over a mix of what a deployment sees (per round: token + enrollment, five look-ups of
// mailboxes enrolled before, OCSP for one certificate by GET, the CRL, and every fourth round a revocation) while the
// service's resident set size is read from /proc every 10 s. Mailboxes and certificates are new all the time, so caches
// keyed by them meet their bounds.
// Warm-up: JIT, pools, and the bounded caches filling. It ends at the first sample from 60 s on at which each of the
// service's bounded caches (GET /api/v1/caches: look-up answers, OCSP responses) holds at least 90 % of its byte or entry
// bound, or grew by less than 2 % over the last minute (its working set under this load is smaller than its bound), and
// at the latest after 15 minutes (then the caches' remaining growth counts in the window, and the output says so). The
// window of SECONDS starts there. Why not a fixed minute: a cache filling towards its configured bound is memory the
// operator chose, not growth, and how long it takes depends on the rate (session 17: at 7 times the old rate the caches
// were still filling at minute 6). Growth from 60 s is printed beside it, as measured until then.
static async Task MixedLoadAsync(Uri baseUrl, int seconds, int pid)
{
    const int clients = 8;
    using var http = new HttpClient { BaseAddress = baseUrl };
    var auth = new AuthenticationHeaderValue("Bearer", Environment.GetEnvironmentVariable("CERTPORTAL_BENCH_ADMIN_KEY") ?? "bench-admin-key-0123456789abcdef");
    var issuer = X509CertificateLoader.LoadCertificate(await http.GetByteArrayAsync("/ca/issuing.crt"));
#pragma warning disable CA5350 // RFC 5019: CertIDs use SHA-1; it names the issuer, it protects nothing
    var nameHash = SHA1.HashData(issuer.SubjectName.RawData);
    var keyHash = SHA1.HashData(issuer.PublicKey.EncodedKeyValue.RawData);
#pragma warning restore CA5350
    // CSRs for 64 keys, reused round robin (the client's key generation is not the service's work), with an empty
    // subject: the token names the mailbox.
    var csrs = Enumerable.Range(0, 64).Select(i =>
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return new CertificateRequest(new X500DistinguishedName(""), key, HashAlgorithmName.SHA256).CreateSigningRequestPem();
    }).ToArray();
    var enrolled = new List<(string Email, string Serial)>();
    long rounds = 0, failures = 0;
    var started = Stopwatch.StartNew();
    // Elapsed ticks at which the clients stop: unknown (long.MaxValue) until the warm-up has ended.
    long stopAt = long.MaxValue;
    bool Running() => started.ElapsedTicks < Interlocked.Read(ref stopAt);
    var maxWarmUp = TimeSpan.FromMinutes(15);
    var samples = new List<(double At, long Rss, CacheFill Lookup, CacheFill Ocsp)>();
    int warmIndex = -1;
    string warmReason = "";

    async Task<HttpResponseMessage> AdminPost(string path, object body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
        request.Headers.Authorization = auth;
        return await http.SendAsync(request);
    }

    async Task<(CacheFill Lookup, CacheFill Ocsp)> Caches()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/caches");
        request.Headers.Authorization = auth;
        using var response = await http.SendAsync(request);
        response.EnsureSuccessStatusCode();
        var json = await response.Content.ReadFromJsonAsync<JsonElement>();
        static CacheFill Fill(JsonElement c) => new(c.GetProperty("entries").GetInt64(), c.GetProperty("bytes").GetInt64(),
            c.GetProperty("maxEntries").GetInt64(), c.GetProperty("maxBytes").GetInt64());
        return (Fill(json.GetProperty("lookup")), Fill(json.GetProperty("ocsp")));
    }

    var sampler = Task.Run(async () =>
    {
        while (true)
        {
            var (lookupFill, ocspFill) = await Caches();
            var at = started.Elapsed;
            samples.Add((at.TotalSeconds, ResidentBytes(pid), lookupFill, ocspFill));
            if (warmIndex < 0 && at.TotalSeconds >= Math.Min(60, seconds / 2.0))
            {
                // The sample a minute back, to tell a cache that has stopped growing below its bound.
                var back = samples.FindLastIndex(x => x.At <= at.TotalSeconds - 60);
                var settled = back >= 0
                    ? lookupFill.Settled(samples[back].Lookup) && ocspFill.Settled(samples[back].Ocsp)
                    : lookupFill.Full && ocspFill.Full;
                if (settled || at >= maxWarmUp)
                {
                    warmIndex = samples.Count - 1;
                    warmReason = settled ? "caches full or no longer growing" : $"caches still filling at {maxWarmUp.TotalMinutes:N0} minutes";
                    Interlocked.Exchange(ref stopAt, started.ElapsedTicks + (long)(seconds * Stopwatch.Frequency));
                }
            }
            if (!Running()) break;
            await Task.Delay(TimeSpan.FromSeconds(10));
        }
    });
    await Task.WhenAll(Enumerable.Range(0, clients).Select(client => Task.Run(async () =>
    {
        var random = new Random(client);
        while (Running())
        {
            var n = Interlocked.Increment(ref rounds);
            var email = $"mem{n}@example.com";
            using var t = await AdminPost("/api/v1/tokens", new { email, profile = "signing", validHours = 1 });
            var token = (await t.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("token").GetString();
            using var e = await http.PostAsJsonAsync("/api/v1/enrollments", new { token, csr = csrs[n % csrs.Length] });
            if ((int)e.StatusCode != 201) { Interlocked.Increment(ref failures); continue; }
            var serial = (await e.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("serialNumber").GetString()!;
            (string Email, string Serial)[] known;
            lock (enrolled)
            {
                enrolled.Add((email, serial));
                known = [.. Enumerable.Range(0, 5).Select(_ => enrolled[random.Next(enrolled.Count)])];
            }
            foreach (var (mailbox, _) in known)
            {
                using var lookup = await http.GetAsync($"/api/v1/directory/{mailbox}/certificates?usage=signing");
                if ((int)lookup.StatusCode is not (200 or 404)) Interlocked.Increment(ref failures);
            }
            using (var ocsp = await http.GetAsync("/ocsp/" + Uri.EscapeDataString(Convert.ToBase64String(OcspRequestFor(nameHash, keyHash, known[0].Serial)))))
                if (!ocsp.IsSuccessStatusCode) Interlocked.Increment(ref failures);
            using (var crl = await http.GetAsync("/crl/issuing.crl"))
                if (!crl.IsSuccessStatusCode) Interlocked.Increment(ref failures);
            if (n % 4 == 0)
            {
                using var revoke = await AdminPost($"/api/v1/certificates/{known[1].Serial}/revoke", new { reason = "superseded" });
                if (!revoke.IsSuccessStatusCode) Interlocked.Increment(ref failures);
            }
        }
    })));
    await sampler;
    const double MiB = 1024 * 1024;
    var warm = samples[warmIndex];
    var minute = samples.First(s => s.At >= Math.Min(60, seconds / 2.0));
    var end = samples[^1];
    var peak = samples.Where(s => s.At >= warm.At).Max(s => s.Rss);
    static string Mib(long bytes) => (bytes / MiB).ToString("N1", System.Globalization.CultureInfo.InvariantCulture);
    Console.WriteLine($"RSS every 10 s (MiB): {string.Join(' ', samples.Select(s => (s.Rss / MiB).ToString("N0", System.Globalization.CultureInfo.InvariantCulture)))}");
    Console.WriteLine($"Look-up cache every 10 s (MiB): {string.Join(' ', samples.Select(s => Mib(s.Lookup.Bytes)))}");
    Console.WriteLine($"OCSP cache every 10 s (MiB): {string.Join(' ', samples.Select(s => Mib(s.Ocsp.Bytes)))}");
    Console.WriteLine($"Warm-up ended at {warm.At:N0} s ({warmReason}): look-up cache {Mib(warm.Lookup.Bytes)} of {Mib(warm.Lookup.MaxBytes)} MiB " +
        $"({warm.Lookup.Entries:N0} mailboxes), OCSP cache {Mib(warm.Ocsp.Bytes)} of {Mib(warm.Ocsp.MaxBytes)} MiB ({warm.Ocsp.Entries:N0} responses); " +
        $"from 60 s ({minute.Rss / MiB:N0} MiB) to the end: {100.0 * (end.Rss - minute.Rss) / minute.Rss:+0.0;-0.0} %");
    Console.WriteLine($"| memory, {seconds / 60.0:N0} minutes mixed after a {warm.At:N0}-s warm-up ({rounds:N0} rounds: enrollment, 5 look-ups, OCSP, CRL, every 4th a revocation; {failures} failed), {clients} clients | " +
        $"RSS after the warm-up {warm.Rss / MiB:N0} MiB, at the end {end.Rss / MiB:N0} MiB (peak {peak / MiB:N0} MiB): " +
        $"{100.0 * (end.Rss - warm.Rss) / warm.Rss:+0.0;-0.0} % | | | growth < 20 % |");

    static long ResidentBytes(int pid) =>
        File.ReadLines($"/proc/{pid}/status").Where(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
            .Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024).First();

    // RFC 6960 OCSPRequest for one certificate, SHA-1 CertID (what RFC 5019 clients send), no nonce.
    static byte[] OcspRequestFor(byte[] nameHash, byte[] keyHash, string serialHex)
    {
        var w = new System.Formats.Asn1.AsnWriter(System.Formats.Asn1.AsnEncodingRules.DER);
        using (w.PushSequence())            // OCSPRequest
        using (w.PushSequence())            // TBSRequest
        using (w.PushSequence())            // requestList
        using (w.PushSequence())            // Request
        using (w.PushSequence())            // CertID
        {
            using (w.PushSequence())
            {
                w.WriteObjectIdentifier("1.3.14.3.2.26");
                w.WriteNull();
            }
            w.WriteOctetString(nameHash);
            w.WriteOctetString(keyHash);
            w.WriteInteger(Convert.FromHexString(serialHex));
        }
        return w.Encode();
    }
}

static async Task<List<(string, string)>> EndToEndAsync(string temp, bool quick)
{
    var port = CertPortal.Tests.Infrastructure.FreePort.Next();
    var dataDir = Path.Combine(temp, "service");
    var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateBuilder(new Microsoft.AspNetCore.Builder.WebApplicationOptions
    {
        Args = [$"--urls=http://127.0.0.1:{port}", $"--CertPortal:DataDirectory={dataDir}", "--CertPortal:AdminApiKey=bench-admin-key-0123456789abcdef",
            "--CertPortal:Ca:KeyPassphrase=bench-passphrase-0123", "--Logging:LogLevel:Default=Warning"],
    });
    builder.AddCertPortal();
    await using var app = builder.Build();
    await app.InitializeCertPortalAsync();
    app.UseCertPortal();
    await app.StartAsync();

    using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
    http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "bench-admin-key-0123456789abcdef");
    var n = quick ? 200 : 2000;
    const int clients = 8;
    // CSRs made up front: the client's key generation is not the service's work.
    var csrs = Enumerable.Range(0, n).Select(i =>
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return new CertificateRequest($"CN=bench{i}@example.test", key, HashAlgorithmName.SHA256).CreateSigningRequestPem();
    }).ToArray();
    var latencies = new double[n];
    var next = -1;
    var sw = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, clients).Select(async _ =>
    {
        int i;
        while ((i = Interlocked.Increment(ref next)) < n)
        {
            var started = Stopwatch.GetTimestamp();
            var t = await http.PostAsJsonAsync("/api/v1/tokens", new { email = $"bench{i}@example.test", profile = "dual", validHours = 1 });
            var token = (await t.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("token").GetString();
            var e = await http.PostAsJsonAsync("/api/v1/enrollments", new { token, csr = csrs[i] });
            if ((int)e.StatusCode != 201) throw new InvalidOperationException($"enrollment failed: {e.StatusCode}");
            latencies[i] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        }
    }));
    sw.Stop();
    await app.StopAsync();
    Array.Sort(latencies);
    double P(double q) => latencies[(int)Math.Min(latencies.Length - 1, Math.Ceiling(q * latencies.Length) - 1)];
    return
    [
        ($"End to end over HTTP: token + enrollment, {clients} clients, SQLite ({n} certificates)", $"{n / sw.Elapsed.TotalSeconds:N0} enrollments/s"),
        ("End to end latency (token + enrollment) p50 / p95 / p99", $"{P(0.50):N1} / {P(0.95):N1} / {P(0.99):N1} ms"),
    ];
}

/// <summary>One of the service's bounded caches as GET /api/v1/caches reports it.</summary>
internal readonly record struct CacheFill(long Entries, long Bytes, long MaxEntries, long MaxBytes)
{
    /// <summary>At 90 % of a bound (a cache that is off counts as full).</summary>
    public bool Full => MaxEntries == 0 || MaxBytes == 0 || Entries >= MaxEntries * 9 / 10 || Bytes >= MaxBytes * 9 / 10;

    /// <summary>Full, or grown by less than 2 % since <paramref name="before"/> (a minute earlier).</summary>
    public bool Settled(CacheFill before) => Full || Bytes <= before.Bytes + before.Bytes / 50;
}
