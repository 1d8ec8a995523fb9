using System.Collections.Concurrent;
using System.Data.Common;
using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Gal;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Ocsp;

/// <summary>An answer to send: the DER OCSPResponse and, for a signed response that may be cached by HTTP caches,
/// its validity and entity tag (null for error responses and responses carrying a nonce). With <see cref="Certificate"/>
/// set, <see cref="Der"/> is the response but its last bytes, the responder's certificate: a kept response shares that
/// one array with every other response of its responder instead of holding a copy (703 of 1,182 bytes with EC keys).</summary>
public sealed record OcspAnswer(byte[] Der, DateTimeOffset? ThisUpdate = null, DateTimeOffset? NextUpdate = null, string? ETag = null,
    byte[]? Certificate = null)
{
    public int Length => Der.Length + (Certificate?.Length ?? 0);

    /// <summary>The whole response in one array.</summary>
    public byte[] ToArray() => Certificate is null ? Der : [.. Der, .. Certificate];

    /// <summary>The GET answer's caching headers as last formatted (<see cref="OcspApi.HttpCaching"/>).</summary>
    internal OcspApi.HttpCaching? Caching { get; set; }
}

/// <summary>Answers OCSP requests (RFC 6960, RFC 5019 profile) for both CAs, from memory: each certificate's signed
/// response is kept per (CA, CertID hash algorithm, serial), so a relying party's question costs a dictionary look-up.
/// A response is kept from the certificate's second request within a recent window on (<see cref="OcspDoorkeeper"/>):
/// the first is signed and answered but not kept, the second is signed once more and kept, the third on is served from
/// memory, so certificates asked about once do not fill the cache.
/// <para>Kept correct on every node with the look-up cache's change log: issuance, revocation, hold and release write a
/// CertificateChange row in their transaction, and <see cref="RecipientCache.MailboxesChanged"/> (at commit on this node,
/// at the next poll on the others) drops the responses of that mailbox's certificates and signs them again in the
/// background. A response read while such a change was under way is answered but not kept. Responses are signed again <c>Ocsp:RefreshAfter</c> after their
/// thisUpdate (in the background, or at the next request), and whenever the signing certificate was renewed.</para>
/// <para>Serials this CA never issued get <c>unknown</c> (RFC 6960 2.2), signed per request and never kept, so a flood
/// of made-up serials cannot fill the memory. A request with a nonce gets a freshly signed response carrying it, with
/// the status from memory; so does a request for several certificates.</para></summary>
public sealed class OcspResponder : BackgroundService
{
    // How often signers are checked for renewal (or another node's renewal) and old responses re-signed. The old signer
    // stays valid for Ocsp:SignerRenewBefore, so a minute's lag is harmless.
    private static readonly TimeSpan CheckInterval = TimeSpan.FromMinutes(1);
    private static readonly TimeSpan RefreshMargin = TimeSpan.FromMinutes(5);
    private const int MaxRememberedChanges = 10_000;

    private static readonly OcspAnswer Malformed = new(OcspResponseEncoder.Error(OcspResponseStatus.MalformedRequest));
    private static readonly OcspAnswer Unauthorized = new(OcspResponseEncoder.Error(OcspResponseStatus.Unauthorized));
    private static readonly OcspAnswer InternalError = new(OcspResponseEncoder.Error(OcspResponseStatus.InternalError));

    private readonly OcspSigners _signers;
    private readonly CaHierarchy _ca;
    private readonly RecipientCache _changes;
    private readonly IServiceScopeFactory _scopes;
    private readonly OcspOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<OcspResponder> _logger;
    private readonly IssuerHashes[] _issuers;
    private readonly OcspDoorkeeper _doorkeeper = new();

    private readonly ConcurrentDictionary<Key, Entry> _entries = new();
    // GET paths answered from a kept response, to that response: RFC 5019 clients send the same request bytes every time,
    // so a repeated GET is answered without decoding or parsing it. Only kept responses are named here, each by at most
    // MaxPathsPerResponse paths; a response leaving _entries takes its paths with it (Drop), under _gate.
    private readonly ConcurrentDictionary<string, Entry> _byPath = new(StringComparer.Ordinal);
    private const int MaxPathsPerResponse = 4;
    private const int MaxRememberedPathLength = 512;
    private readonly Lock _gate = new();
    // Under _gate: which cached responses belong to a mailbox (one or two in nearly every case: an array, not a set per
    // mailbox), and the generation at which each mailbox last changed.
    private readonly Dictionary<string, Key[]> _byMailbox = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _changedAt = new(StringComparer.Ordinal);
    private long _generation;
    // Under _gate: the bytes of the responses in _entries (Entry.Size), bounded by Ocsp:MaxCacheBytes.
    private long _bytes;
    private readonly CancellationTokenSource _stopping = new();
    private long _floor;

    /// <summary>What a kept response costs besides its bytes and paths: the CertID and its arrays, the key's and the
    /// mailbox's strings, the answer objects, the entity tag, the nodes of the dictionaries that name it. Measured
    /// (CacheByteAccountingTests, EC-P256, seven runs): 1,360-1,800 bytes on the heap per response, 1,580 on average, with
    /// a 479-byte response and a GET path, counted as 1,590.</summary>
    private const int EntryOverhead = 800;
    private const int PathOverhead = 64;

    private readonly record struct Key(string Authority, string HashAlgorithm, string Serial);

    private sealed class Entry(Key key, CertId id, string? mailbox, CertificateStatusAnswer answer, OcspSigner signer, byte[] der, DateTimeOffset thisUpdate,
        DateTimeOffset nextUpdate, DateTimeOffset? expires)
    {
        /// <summary>The certificate's notAfter while it had not passed when this was signed: from then on the answer
        /// needs the archive cutoff, so it is signed again.</summary>
        public DateTimeOffset? Expires { get; } = expires;
        public Key Key { get; } = key;
        public CertId Id { get; } = id;
        public string? Mailbox { get; } = mailbox;
        public CertificateStatusAnswer Answer { get; } = answer;
        public OcspSigner Signer { get; } = signer;
        public OcspAnswer Http { get; } = Kept(der, thisUpdate, nextUpdate, signer.CertificateDer);
        public DateTimeOffset ThisUpdate { get; } = thisUpdate;
        /// <summary>GET paths that name this response in _byPath; replaced, never changed, under the responder's lock.</summary>
        public string[] Paths { get; set; } = [];
        /// <summary>Counted against Ocsp:MaxCacheBytes: the response (without the responder's certificate, which it
        /// shares), the objects around it (<see cref="EntryOverhead"/>), and the paths that name it (changed only under
        /// the responder's lock).</summary>
        public long Size => EntryOverhead + Http.Der.Length + Paths.Sum(p => PathOverhead + 2L * p.Length);

        private static OcspAnswer Kept(byte[] der, DateTimeOffset thisUpdate, DateTimeOffset nextUpdate, byte[] certificate)
        {
            var etag = "\"" + Convert.ToHexString(SHA256.HashData(der), 0, 16) + "\"";
            return der.AsSpan().EndsWith(certificate)
                ? new(der[..^certificate.Length], thisUpdate, nextUpdate, etag, certificate)
                : new(der, thisUpdate, nextUpdate, etag);
        }
    }

    private sealed record IssuerHashes(string Authority, string HashAlgorithm, byte[] NameHash, byte[] KeyHash);

    public OcspResponder(OcspSigners signers, CaHierarchy ca, RecipientCache changes, IServiceScopeFactory scopes, CertPortalOptions options,
        TimeProvider time, ILogger<OcspResponder> logger)
    {
        _signers = signers;
        _ca = ca;
        _changes = changes;
        _scopes = scopes;
        _options = options.Ocsp;
        _time = time;
        _logger = logger;
        _issuers = [.. Issuers(ca.Issuing), .. Issuers(ca.Root)];
        changes.MailboxesChanged += OnMailboxesChanged;
    }

    /// <summary>Signed responses held in memory.</summary>
    public int Count => _entries.Count;

    /// <summary>The answer to a GET whose path was answered from a kept response before, if that response is still kept
    /// and fresh; else false, and the caller reads the request (<see cref="RespondAsync"/> with the path).</summary>
    public bool TryAnswerByPath(string? path, [NotNullWhen(true)] out OcspAnswer? answer)
    {
        answer = null;
        if (path is null || !_byPath.TryGetValue(path, out var entry) || !Fresh(entry, entry.Key.Authority)) return false;
        answer = entry.Http;
        return true;
    }

    /// <param name="getPath">A GET's path: remembered for <see cref="TryAnswerByPath"/> when the answer is a kept response.</param>
    public async ValueTask<OcspAnswer> RespondAsync(ReadOnlyMemory<byte> der, CancellationToken ct, string? getPath = null)
    {
        var request = OcspRequest.TryRead(der);
        if (request is null) return Malformed;
        // One responder signs the whole response, so every CertID must name the same CA (RFC 5019 clients ask for one).
        string? authority = null;
        foreach (var id in request.Certificates)
        {
            var issuer = IssuerOf(id);
            if (issuer is null || (authority is not null && issuer != authority)) return Unauthorized;
            authority = issuer;
        }
        try
        {
            if (request.Certificates.Count == 1 && request.Nonce is null)
            {
                var entry = await EntryAsync(authority!, request.Certificates[0], ct);
                if (getPath is not null) Remember(getPath, entry);
                return entry.Http;
            }

            var answers = new List<(CertId, CertificateStatusAnswer)>(request.Certificates.Count);
            var now = _time.GetUtcNow();
            foreach (var id in request.Certificates)
            {
                var key = new Key(authority!, id.HashAlgorithm, id.SerialHex);
                answers.Add((id, _entries.TryGetValue(key, out var cached) && !(cached.Expires <= now)
                    ? cached.Answer : (await ReadStatusAsync(authority!, id, ct)).Answer));
            }
            return new OcspAnswer(OcspResponseEncoder.Build(_signers.For(authority!), now, answers, now, now + _options.ResponseLifetime, request.Nonce));
        }
        catch (Exception e) when (e is DbException or InvalidOperationException or CryptographicException)
        {
            // RFC 6960 4.2.1: internalError, so the client falls back to the CRL instead of reading a 500 as an answer.
            _logger.LogError(e, "OCSP response for the {Authority} CA failed", authority);
            return InternalError;
        }
    }

    /// <summary>Signed responses held in memory now: at most <see cref="OcspOptions.MaxCachedResponses"/>.</summary>
    internal int CachedResponses => _entries.Count;

    /// <summary>Bytes the cached responses take, as counted against <see cref="OcspOptions.MaxCacheBytes"/>.</summary>
    internal long CachedBytes { get { lock (_gate) return _bytes; } }

    /// <summary>The cached response, or a new one (kept unless it is unknown, a change overlapped its read, or this is
    /// the certificate's first request lately).</summary>
    private async ValueTask<Entry> EntryAsync(string authority, CertId id, CancellationToken ct)
    {
        var key = new Key(authority, id.HashAlgorithm, id.SerialHex);
        if (!_entries.TryGetValue(key, out var entry)) return await LoadAsync(key, id, admitted: false, ct);
        return Fresh(entry, authority) ? entry : await LoadAsync(key, id, admitted: true, ct);
    }

    private bool Fresh(Entry entry, string authority) => Current(entry, authority, _time.GetUtcNow(), _options.RefreshAfter);

    /// <summary>A kept response is current while its signer is, it is younger than <paramref name="refreshAfter"/> and its
    /// certificate has not expired since. One dated ahead of the clock (the clock was stepped back after it was signed) is not:
    /// relying parties refuse a thisUpdate in their future ("not yet valid" in OpenSSL beyond its 5 minutes' leeway), and a
    /// negative age would otherwise count as fresh until the clock caught up.</summary>
    private bool Current(Entry entry, string authority, DateTimeOffset now, TimeSpan refreshAfter) =>
        ReferenceEquals(entry.Signer, _signers.For(authority)) && entry.ThisUpdate <= now && now - entry.ThisUpdate < refreshAfter &&
        !(entry.Expires <= now);

    /// <param name="admitted">The response replaces a kept one (stale, or dropped by a change); otherwise it is kept only
    /// when the doorkeeper has seen the certificate asked about before.</param>
    private async Task<Entry> LoadAsync(Key key, CertId id, bool admitted, CancellationToken ct)
    {
        var generation = Volatile.Read(ref _generation);
        var (mailbox, answer, expires) = await ReadStatusAsync(key.Authority, id, ct);
        var now = _time.GetUtcNow();
        var nextUpdate = now + _options.ResponseLifetime;
        var signer = _signers.For(key.Authority);
        var der = OcspResponseEncoder.Build(signer, now, [(id, answer)], now, nextUpdate, null);
        var entry = new Entry(key, id, mailbox, answer, signer, der, now, nextUpdate, expires);
        // The doorkeeper is asked last, so unknown serials (a flood of made-up ones) leave no marks to push out real ones.
        if (answer.Status != OcspCertStatus.Unknown && _options.MaxCachedResponses > 0 && _options.MaxCacheBytes > 0 && _changes.Watching &&
            (admitted || _doorkeeper.SeenBefore(key.Authority, key.HashAlgorithm, key.Serial)))
            Keep(key, entry, generation);
        return entry;
    }

    private void Keep(Key key, Entry entry, long generation)
    {
        lock (_gate)
        {
            // A change to this mailbox since the read began (or one forgotten since): the read may predate it.
            if (generation < _floor) return;
            if (entry.Mailbox is not null && _changedAt.TryGetValue(entry.Mailbox, out var changed) && changed > generation) return;
            if (_entries.TryGetValue(key, out var replaced))
            {
                _bytes -= replaced.Size;
                Drop(replaced);
            }
            _entries[key] = entry;
            _bytes += entry.Size;
            if (entry.Mailbox is not null)
            {
                if (!_byMailbox.TryGetValue(entry.Mailbox, out var keys)) _byMailbox[entry.Mailbox] = [key];
                else if (Array.IndexOf(keys, key) < 0) _byMailbox[entry.Mailbox] = [.. keys, key];
            }
            if (_entries.Count > _options.MaxCachedResponses || _bytes > _options.MaxCacheBytes) EvictSome();
        }
    }

    /// <summary>Under _gate, when a bound is passed: drops responses (whichever the dictionary yields first) until a
    /// tenth of each bound is free again.</summary>
    private void EvictSome() =>
        EvictDownTo(_options.MaxCachedResponses - Math.Max(1, _options.MaxCachedResponses / 10), _options.MaxCacheBytes - _options.MaxCacheBytes / 10);

    /// <summary>Drops every kept response (tests read the heap before and after it, to hold the byte count against what
    /// the responses take).</summary>
    internal void Clear()
    {
        lock (_gate) EvictDownTo(0, 0);
    }

    /// <summary>Under _gate: drops responses until at most <paramref name="keepCount"/> responses of at most
    /// <paramref name="keepBytes"/> bytes are kept.</summary>
    private void EvictDownTo(int keepCount, long keepBytes)
    {
        foreach (var (key, entry) in _entries)
        {
            if (_entries.Count <= keepCount && _bytes <= keepBytes) break;
            if (!_entries.TryRemove(key, out _)) continue;
            _bytes -= entry.Size;
            Drop(entry);
            if (entry.Mailbox is not null && _byMailbox.TryGetValue(entry.Mailbox, out var keys) && Array.IndexOf(keys, key) >= 0)
            {
                if (keys.Length == 1) _byMailbox.Remove(entry.Mailbox);
                else _byMailbox[entry.Mailbox] = Array.FindAll(keys, k => k != key);
            }
        }
    }

    /// <summary>Under _gate: a response leaving the cache takes its GET paths with it.</summary>
    private void Drop(Entry entry)
    {
        foreach (var path in entry.Paths) _byPath.TryRemove(new KeyValuePair<string, Entry>(path, entry));
    }

    /// <summary>Names a kept response by a GET path, if it is still the cache's (not dropped by a change meanwhile) and
    /// has room for another path; counted against the byte bound.</summary>
    private void Remember(string path, Entry entry)
    {
        if (path.Length > MaxRememberedPathLength || entry.Paths.Length >= MaxPathsPerResponse || _byPath.ContainsKey(path)) return;
        lock (_gate)
        {
            if (!_entries.TryGetValue(entry.Key, out var current) || !ReferenceEquals(current, entry) || entry.Paths.Length >= MaxPathsPerResponse ||
                !_byPath.TryAdd(path, entry))
                return;
            entry.Paths = [.. entry.Paths, path];
            _bytes += PathOverhead + 2L * path.Length;
            if (_bytes > _options.MaxCacheBytes) EvictSome();
        }
    }

    private void OnMailboxesChanged(IReadOnlyCollection<string> mailboxes)
    {
        List<(Key, CertId)>? dropped = null;
        lock (_gate)
        {
            var generation = ++_generation;
            foreach (var mailbox in mailboxes)
            {
                _changedAt[mailbox] = generation;
                if (!_byMailbox.Remove(mailbox, out var keys)) continue;
                foreach (var key in keys)
                    if (_entries.TryRemove(key, out var entry))
                    {
                        _bytes -= entry.Size;
                        Drop(entry);
                        (dropped ??= []).Add((key, entry.Id));
                    }
            }
            if (_changedAt.Count > MaxRememberedChanges)
            {
                // Forget the per-mailbox generations; reads that began before now are then not kept at all.
                _changedAt.Clear();
                _floor = generation + 1;
            }
        }
        // Signed again with the new status at once, off the caller's thread (a commit interceptor or the change-log
        // poll), so the next relying party that asks is answered from memory.
        if (dropped is not null) _ = Task.Run(() => ResignAsync(dropped));
    }

    private async Task ResignAsync(List<(Key Key, CertId Id)> dropped)
    {
        try
        {
            foreach (var (key, id) in dropped) await LoadAsync(key, id, admitted: true, _stopping.Token);
        }
        catch (Exception e) when (!_stopping.IsCancellationRequested)
        {
            // Nothing is lost: the next request for these certificates signs their answers.
            _logger.LogWarning(e, "Signing OCSP responses again after a status change failed");
        }
        catch (Exception) when (_stopping.IsCancellationRequested)
        {
            // Shutting down.
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        // A stop after Dispose was seen once in the test suite (a test host shutting down): there is nothing left to cancel,
        // and cancelling the disposed source would throw out of the host's shutdown.
        if (!Volatile.Read(ref _disposed)) await _stopping.CancelAsync();
        await base.StopAsync(cancellationToken);
    }

    private bool _disposed;

    public override void Dispose()
    {
        Volatile.Write(ref _disposed, true);
        _changes.MailboxesChanged -= OnMailboxesChanged;
        _stopping.Dispose();
        base.Dispose();
    }

    /// <summary>The issuing CA answers for the certificates in the Certificates table; the root only for the issuing CA
    /// certificate (no CA revocation exists here, so it is good). <c>Expires</c>: the certificate's notAfter while it is
    /// in the future.</summary>
    private async Task<(string? Mailbox, CertificateStatusAnswer Answer, DateTimeOffset? Expires)> ReadStatusAsync(string authority, CertId id,
        CancellationToken ct)
    {
        var serial = id.SerialHex;
        if (authority == CertificateAuthority.RootName)
            return (null, new CertificateStatusAnswer(serial == _ca.Issuing.Certificate.SerialNumber ? OcspCertStatus.Good : OcspCertStatus.Unknown, null, null), null);
        if (serial.Length > 64) return (null, new CertificateStatusAnswer(OcspCertStatus.Unknown, null, null), null);

        await using var scope = _scopes.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var row = await db.Certificates.AsNoTracking().Where(c => c.SerialNumber == serial)
            .Select(c => new { c.Email, c.RevokedAt, c.RevocationReason, c.NotAfter }).FirstOrDefaultAsync(ct);
        if (row is null) return (null, new CertificateStatusAnswer(OcspCertStatus.Unknown, null, null), null);
        var mailbox = row.Email.ToLowerInvariant();
        // An expired certificate keeps its last status (a signature made while it was valid can still be checked), with
        // the archive cutoff of RFC 6960 4.4.4: as no certificate record is ever deleted, status is kept for everything
        // this CA ever issued, so the cutoff is the CA certificate's notBefore (what ETSI EN 319 411-2 6.3.10 asks of
        // responders that answer for expired certificates).
        var expired = row.NotAfter <= _time.GetUtcNow();
        DateTimeOffset? cutoff = expired ? new DateTimeOffset(_ca.Issuing.Certificate.NotBefore.ToUniversalTime(), TimeSpan.Zero) : null;
        DateTimeOffset? expires = expired ? null : row.NotAfter;
        if (row.RevokedAt is null) return (mailbox, new CertificateStatusAnswer(OcspCertStatus.Good, null, null, cutoff), expires);
        // A hold is revoked with reason certificateHold (RFC 6960 2.2); "unspecified" is left out, as in the CRL (S/MIME BR 7.2.2).
        var reason = row.RevocationReason is null or RevocationReason.Unspecified ? null : row.RevocationReason;
        return (mailbox, new CertificateStatusAnswer(OcspCertStatus.Revoked, row.RevokedAt, reason, cutoff), expires);
    }

    private string? IssuerOf(CertId id)
    {
        foreach (var issuer in _issuers)
            if (issuer.HashAlgorithm == id.HashAlgorithm && issuer.NameHash.AsSpan().SequenceEqual(id.IssuerNameHash) &&
                issuer.KeyHash.AsSpan().SequenceEqual(id.IssuerKeyHash))
                return issuer.Authority;
        return null;
    }

    /// <summary>issuerNameHash and issuerKeyHash (RFC 6960 4.1.1) of one CA in every hash a client may choose.</summary>
    private static IEnumerable<IssuerHashes> Issuers(CertificateAuthority ca)
    {
        var name = ca.Certificate.SubjectName.RawData;
        var key = ca.Certificate.PublicKey.EncodedKeyValue.RawData;
        yield return new IssuerHashes(ca.Name, Oids.Sha1, OcspResponseEncoder.Sha1(name), OcspResponseEncoder.Sha1(key));
        yield return new IssuerHashes(ca.Name, Oids.Sha256, SHA256.HashData(name), SHA256.HashData(key));
        yield return new IssuerHashes(ca.Name, Oids.Sha384, SHA384.HashData(name), SHA384.HashData(key));
        yield return new IssuerHashes(ca.Name, Oids.Sha512, SHA512.HashData(name), SHA512.HashData(key));
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = PollTimer.Create(CheckInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    await CheckAsync(stoppingToken);
                }
                catch (Exception e) when (PollTimer.FailedPass(e, stoppingToken))
                {
                    // Responses in memory stay valid until their nextUpdate; the next tick tries again.
                    _logger.LogWarning(e, "OCSP signer check or response refresh failed");
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopped: ends quietly, as PollTimer.RunAsync explains.
        }
    }

    /// <summary>Renews (or picks up another node's renewal of) the signing certificates, then signs again the responses
    /// that are due (<c>Ocsp:RefreshAfter</c>, a few minutes early) or were signed by a replaced certificate.</summary>
    public async Task CheckAsync(CancellationToken ct)
    {
        await using (var scope = _scopes.CreateAsyncScope())
            await _signers.RefreshAsync(scope.ServiceProvider.GetRequiredService<CertPortalDbContext>(), ct);
        var now = _time.GetUtcNow();
        foreach (var (key, entry) in _entries)
        {
            if (Current(entry, key.Authority, now, _options.RefreshAfter - RefreshMargin)) continue;
            await LoadAsync(key, entry.Id, admitted: true, ct);
        }
    }
}
