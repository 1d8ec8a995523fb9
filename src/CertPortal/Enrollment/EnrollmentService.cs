using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Revocation;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Enrollment;

/// <summary>Either a CSR (the key stays with the person), or keyAlgorithm + pkcs12Password for a
/// server-generated, escrowed encryption key returned as PKCS#12 (with requestId, a retry can collect it).</summary>
public sealed record EnrollmentRequest(string? Token, string? Csr, string? KeyAlgorithm = null, string? Pkcs12Password = null, string? Pkcs12Format = null,
    string? RequestId = null)
{
    // The token and the PKCS#12 password must never reach a log through a record's generated ToString.
    public override string ToString() => $"enrollment request ({(Csr is null ? $"server key {KeyAlgorithm}" : $"{Csr.Length} characters of CSR")})";
}

public sealed record EnrollmentResult(string SerialNumber, string Email, string Profile,
    [property: System.Text.Json.Serialization.JsonConverter(typeof(PemJsonConverter))] string CertificatePem,
    [property: System.Text.Json.Serialization.JsonConverter(typeof(PemJsonConverter.Kept))] string ChainPem,
    DateTimeOffset NotBefore, DateTimeOffset NotAfter)
{
    /// <summary>Server-generated keys only: base64 PKCS#12 with key, certificate and chain.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? Pkcs12 { get; init; }

    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public bool? KeyEscrowed { get; init; }

    /// <summary>True when this repeats an enrollment that had already succeeded (the answer is 200, not 201).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public bool Collected { get; init; }
}

/// <summary>What a certificate is issued for, and the one-time permission its issuance spends (in the transaction
/// that records it; false when it was spent or withdrawn meanwhile): an enrollment token (<see cref="SpendAsync"/> null:
/// spent with the blocked-key check in one statement, <see cref="DirectSql.SpendTokenUnlessBlockedAsync"/>), or the
/// certificate a renewal replaces.</summary>
/// <param name="MailboxValidatedAt">When the mailbox was validated: the token's creation, or for a renewal the renewed certificate's own
/// (<see cref="IssuedCertificate.MailboxValidatedAt"/>).</param>
/// <param name="TokenHash">The token's hash, which names it for the group writer (<see cref="EnrollmentTokens.WriterKey"/>).</param>
internal sealed record IssuanceGrant(string Email, string DisplayName, CertificateProfileName Profile, Guid? TokenId, string? RenewalOf,
    DateTimeOffset MailboxValidatedAt, Func<CertPortalDbContext, string, DateTimeOffset, CancellationToken, Task<bool>>? SpendAsync,
    byte[]? TokenHash = null);

/// <summary>Turns a token and a CSR into a certificate. The certificate is signed first, outside any
/// transaction (a certificate whose recording fails is simply discarded: its random serial was never used);
/// then the token spend, the certificate record, the audit event and the outbox rows commit together through
/// the <see cref="GroupCommitWriter"/>, and only after that commit does the certificate leave the process.
/// A token can be spent once; the same request repeated (same token and public key) collects the certificate
/// it was issued, so a client that lost the answer is never locked out of its own certificate.
/// <para>With an ECDSA issuing key the token is not read first: the group writer reads and spends it in one statement (a claim), the
/// certificate is signed for what the claim returned inside the group's transaction (an ECDSA signature costs less than a hand-off to
/// another thread), and its rows go with the commit. On PostgreSQL that is two round trips per group instead of a token read per
/// enrollment and one per group; on SQLite it spares the read connection, whose page cache every commit empties (4-6 page reads from
/// the files per token read), and the writer's turn, longer by the signatures, commits larger groups (fewer fsyncs per enrollment).
/// A request refused after its claim gives the token back in the same transaction. An RSA signature (~2 ms) stays out of the
/// transaction: RSA issuers read the token first and sign on threads of their own.</para></summary>
/// <remarks>The request's EF Core context is taken from the request's services only on the paths that read through it
/// (collecting a certificate already issued): a pooled context is rented and reset per request that asks for it, and a
/// plain enrollment claims its token in the group writer (ECDSA) or reads it on a connection of its own and writes through the
/// group writer (RSA).</remarks>
public sealed partial class EnrollmentService(
    IServiceProvider services, EnrollmentTokens tokens, CertificateIssuer issuer, CaHierarchy ca, GroupCommitWriter writer,
    CertPortalOptions options, TimeProvider time, IEnumerable<ICertificateEvents> observers, CertPortal.Escrow.KeyArchive archive,
    ILogger<EnrollmentService> logger)
{
    public async Task<Outcome<EnrollmentResult>> EnrollAsync(EnrollmentRequest request, string actor, CancellationToken ct)
    {
        if (IssuingCaEnded() is { } ended) return ended;
        // The CSR checked before the claim is not checked again on the read path below, where a claim that took nothing goes.
        Outcome<SubscriberKey>? checkedCsr = null;
        IReadOnlyList<string> named = [];
        if (!issuer.IssuesOnThreadsOfItsOwn && EnrollmentTokens.HashOf(request.Token) is { } hash)
        {
            var csr = CsrInspector.Inspect(request.Csr, out named);
            checkedCsr = csr;
            if (csr.Failure is null && await ClaimAndIssueAsync(hash, csr.Value!, named, actor) is { } claimed)
                return claimed;
        }
        // The token and the escrow policy's key generation for its profile, read together (one query; on SQLite on a
        // connection kept open for it, see SqliteReadConnections): RSA issuers, and what a claim did not take.
        var found = await tokens.FindWithKeyGenerationAsync(request.Token, ct);
        var token = found.Token;
        if (token is null) return EnrollmentTokens.Unknown;
        if (EnrollmentTokens.RefusalAt(token, time.GetUtcNow()) is { } refused)
            return token.UsedAt is not null && await CollectAsync(token.Id, SameKeyAs(request.Csr, token.Email), ct) is { } collected ? collected : refused;
        if (archive.GenerationFor(token.Profile, found.StoredKeyGeneration) == KeyGenerationPolicy.Required) return ServerKeyRequired(token.Profile);

        var inspected = checkedCsr is { } early ? CsrInspector.ForMailbox(early, named, token.Email) : CsrInspector.Inspect(request.Csr, token.Email);
        if (inspected.Failure is { } csrFailure) return csrFailure;

        // The key's encoding for comparison is made only when a concurrent duplicate is looked for (rare).
        var key = inspected.Value!;
        return await IssueAsync(token, key, actor, c => SameKey(c, key.PublicKey.ExportSubjectPublicKeyInfo()), prepare: null, ct);
    }

    /// <summary>An ECDSA issuing key: the token is read and spent in one statement in the group writer (<see cref="DirectSql.ClaimTokenAsync"/>;
    /// on PostgreSQL in the group's first round trip), under the key's lock; the certificate is signed for the token it returned and its rows
    /// go with the group's commit (on PostgreSQL the second round trip). Null when nothing was claimed (an unknown, spent, withdrawn or expired token, a
    /// blocked key; an unusable CSR is not claimed for): the request then decides as before, from the token read.</summary>
    private async Task<Outcome<EnrollmentResult>?> ClaimAndIssueAsync(byte[] hash, SubscriberKey key, IReadOnlyList<string> named, string actor)
    {
        var now = time.GetUtcNow();
        var serial = SerialNumber.New(now);
        var serialHex = SerialNumber.ToHex(serial);
        var lockName = CompromisedKeys.LockName(key.SpkiSha256);
        var claim = await writer.WriteAsync<Later<(EnrollmentToken? Token, KeyGenerationPolicy? StoredKeyGeneration)>, Claim>(
            [lockName, EnrollmentTokens.WriterKey(hash)],
            async (w, wct) =>
            {
                await w.LockNamedAsync(lockName, wct);
                return await DirectSql.ClaimTokenAsync(w, hash, key.SpkiSha256, serialHex, now, wct);
            },
            async (w, claimed, wct) =>
            {
                var (token, stored) = claimed.Value;
                if (token is null) return new Claim(null, null, null);
                var refusal = archive.GenerationFor(token.Profile, stored) == KeyGenerationPolicy.Required ? ServerKeyRequired(token.Profile)
                    : CsrInspector.OtherMailbox(named, token.Email) ?? UnusableDisplayName(token.DisplayName)
                      ?? EnrollmentTokens.DomainRefusal(token.Email, options.AllowedDomains);
                if (refusal is not null)
                {
                    await DirectSql.GiveBackTokenAsync(w, token.Id, wct);
                    return new Claim(null, refusal, null);
                }
                var grant = new IssuanceGrant(token.Email, token.DisplayName, token.Profile, token.Id, RenewalOf: null, token.CreatedAt, SpendAsync: null);
                SignedCertificate signed;
                try
                {
                    signed = issuer.Issue(Order(grant, key, serial, now));
                }
                catch (CertificateLintException e)
                {
                    await DirectSql.GiveBackTokenAsync(w, token.Id, wct);
                    return new Claim(null, null, e);
                }
                var (added, issuedEvent) = Record(grant, key, serialHex, now, signed, actor);
                await WriteRowsAsync(w, added, issuedEvent, now, addRows: null, wct);
                return new Claim(added, null, null);
            }, resumeOnWriter: true); // the caller only answers (GroupCommitWriter.Answers)
        if (claim.Thrown is { } thrown) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(thrown);
        if (claim.Refusal is { } refused) return refused;
        if (claim.Record is not { } record) return null;
        LogIssued(logger, record.Profile, serialHex, record.Email, record.KeyAlgorithm);
        return Result(record);
    }

    /// <summary>What a claim came to: the certificate recorded, a refusal after the claim (the token given back), a lint failure
    /// (given back too), or nothing (nothing was claimed).</summary>
    private sealed record Claim(IssuedCertificate? Record, Failure? Refusal, Exception? Thrown);

    /// <summary>503 once the issuing CA has (nearly) ended: before, an enrollment spent its token on a certificate that ended
    /// within hours, or before it began. Nothing the client sent; the token stays unspent for when a new CA is in place.</summary>
    public Failure? IssuingCaEnded() => issuer.HasEndedAt(time.GetUtcNow())
        ? new Failure(FailureKind.ServiceUnavailable, "The issuing CA has ended.",
            $"The issuing CA's certificate ends {issuer.IssuingNotAfter.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)} UTC: no " +
            "certificate can be issued under it. Your token was not used; tell the administrator.")
        : null;

    private static Failure ServerKeyRequired(CertificateProfileName profile) => Failure.Unprocessable("Server-generated key required.",
        $"Policy requires {Names.Of(profile)} keys to be generated by the server and escrowed: send keyAlgorithm and pkcs12Password instead of a CSR.");

    /// <summary>Signs, then records through the group writer. <paramref name="prepare"/> runs after signing and
    /// before the write (expensive work such as key escrow belongs there); the rows its result adds commit with the
    /// certificate. <paramref name="sameRequest"/> recognises a repetition of this request in a certificate already
    /// issued for the token (a concurrent duplicate, or a retry), which is then returned instead of a refusal.</summary>
    internal async Task<Outcome<EnrollmentResult>> IssueAsync(EnrollmentToken token, SubscriberKey key, string actor,
        Func<IssuedCertificate, bool> sameRequest,
        Func<string, X509Certificate2, DateTimeOffset, Func<CertPortalDbContext, CancellationToken, Task>>? prepare, CancellationToken ct)
    {
        // The conditional UPDATE is the single point where concurrent enrollments with one token are decided
        // (SQLite serialises writers; PostgreSQL re-checks the WHERE after the row lock, also across nodes).
        var grant = new IssuanceGrant(token.Email, token.DisplayName, token.Profile, token.Id, RenewalOf: null, token.CreatedAt, SpendAsync: null,
            TokenHash: token.TokenHash);
        var issued = await SignAndRecordAsync(grant, key, actor, prepare, ct);
        if (issued.Failure is { } refused) return refused; // the token stays unspent
        if (issued.Value is { } record) return Result(record);

        // Spent, expired or revoked since we looked: if the spend was this very request (a concurrent
        // duplicate), hand out its certificate; our own signed certificate is discarded unused.
        var current = await tokens.FindByIdAsync(token.Id, ct);
        if (current?.UsedAt is not null && await CollectAsync(token.Id, sameRequest, ct) is { } collected) return collected;
        return current is null ? EnrollmentTokens.Unknown : EnrollmentTokens.RefusalAt(current, time.GetUtcNow()) ?? EnrollmentTokens.AlreadyUsed;
    }

    /// <summary>Signs a certificate for <paramref name="grant"/>, then records it through the group writer in one
    /// transaction with the grant's spend, the audit record and every observer's rows. The value is null when the
    /// grant could not be spent (someone else spent it first); a failure when the key is blocked.</summary>
    internal async Task<Outcome<IssuedCertificate?>> SignAndRecordAsync(IssuanceGrant grant, SubscriberKey key, string actor,
        Func<string, X509Certificate2, DateTimeOffset, Func<CertPortalDbContext, CancellationToken, Task>>? prepare, CancellationToken ct)
    {
        if ((UnusableDisplayName(grant.DisplayName) ?? EnrollmentTokens.DomainRefusal(grant.Email, options.AllowedDomains)) is { } unusable) return unusable;
        var now = time.GetUtcNow();
        var serial = SerialNumber.New(now);
        var serialHex = SerialNumber.ToHex(serial);

        var signed = await issuer.IssueAsync(Order(grant, key, serial, now));
        var spkiSha256 = key.SpkiSha256;
        Func<CertPortalDbContext, CancellationToken, Task>? addRows = null;
        if (prepare is not null)
        {
            using var cert = X509CertificateLoader.LoadCertificate(signed.Der);
            addRows = prepare(serialHex, cert, now);
        }

        // The rows are made before the writer's turn (the audit details' JSON): that turn is the one part of an
        // enrollment that runs one at a time, so what it does per unit bounds the rate. Plain commands write them, so a unit that
        // runs again after its group failed writes the same objects again.
        var (added, issuedEvent) = Record(grant, key, serialHex, now, signed, actor);

        Failure? blocked = null;
        Task<IssuedCertificate?> WriteRowsAsync(CertPortalDbContext w, CancellationToken wct) => this.WriteRowsAsync(w, added, issuedEvent, now, addRows, wct);
        // Under the key's lock (PostgreSQL; SQLite has one writer), so a keyCompromise revocation of the same
        // key either finds this certificate and revokes it, or has committed its block, which the check after the lock
        // sees. A token is spent in the same statement as that check; a group's checks travel together (the two steps).
        Task LockKeyAsync(CertPortalDbContext w, CancellationToken wct) => w.LockNamedAsync(CompromisedKeys.LockName(spkiSha256), wct);
        async Task<Later<(DateTimeOffset? BlockedAt, bool Spent)>?> DecideAsync(CertPortalDbContext w, CancellationToken wct)
        {
            await LockKeyAsync(w, wct);
            return grant.SpendAsync is null ? await DirectSql.SpendTokenUnlessBlockedAsync(w, grant.TokenId!.Value, spkiSha256, serialHex, now, wct) : null;
        }
        async Task<IssuedCertificate?> WriteIfDecidedAsync(CertPortalDbContext w, Later<(DateTimeOffset? BlockedAt, bool Spent)>? decided, CancellationToken wct)
        {
            if (decided is not null)
            {
                blocked = CompromisedKeys.Refusal(decided.Value.BlockedAt);
                if (blocked is not null || !decided.Value.Spent) return null;
            }
            else
            {
                blocked = await CompromisedKeys.RefuseIfBlockedAsync(w, spkiSha256, wct);
                if (blocked is not null || !await grant.SpendAsync!(w, serialHex, now, wct)) return null;
            }
            return await WriteRowsAsync(w, wct);
        }
        // The key names the unit for the writer: a revocation of a certificate with this key is not decided in the same round trip.
        // A token's spend nearly always succeeds: on PostgreSQL the unit then writes without waiting for the decision (the spend
        // fails the group where it would have refused, and the group's retry decides step by step), so a group of enrollments
        // costs one round trip. Without prepare (no escrow, so no PKCS#12 to build afterwards) the caller only answers after the
        // write, which on SQLite it does on the writer's thread (GroupCommitWriter.Answers).
        // The token names it too: a CSR enrollment's claim of the same token (ClaimAndIssueAsync), which may give the token back in
        // its second step, is then never in the same run of first steps, where this spend would find the token taken.
        // A renewal names the certificate it renews: a revocation of that certificate is then never in the same run, where its first step
        // would read the certificate before this unit's second step set RenewedBy, and a keyCompromise would miss the renewal it must
        // revoke too (CompromisedRenewals).
        var answersOnly = prepare is null;
        string[] keys = (grant.TokenHash, grant.RenewalOf) switch
        {
            ({ } tokenHash, _) => [CompromisedKeys.LockName(spkiSha256), EnrollmentTokens.WriterKey(tokenHash)],
            (null, { } renewed) => [CompromisedKeys.LockName(spkiSha256), IssuedCertificate.WriterKey(renewed)],
            _ => [CompromisedKeys.LockName(spkiSha256)],
        };
        var record = grant.SpendAsync is not null
            ? await writer.WriteAsync(keys, DecideAsync, WriteIfDecidedAsync, resumeOnWriter: answersOnly)
            : await writer.WriteExpectingSuccessAsync(keys, DecideAsync, WriteIfDecidedAsync, async (w, wct) =>
            {
                await LockKeyAsync(w, wct);
                await DirectSql.SpendTokenOrFailAsync(w, grant.TokenId!.Value, spkiSha256, serialHex, now, wct);
                return await WriteRowsAsync(w, wct);
            }, resumeOnWriter: answersOnly);

        if (blocked is not null) return blocked;
        if (record is not null) LogIssued(logger, record.Profile, serialHex, record.Email, record.KeyAlgorithm);
        return record;
    }

    /// <summary>A token made before DisplayName mode was switched on may lack the name that mode's profile requires.</summary>
    private Failure? UnusableDisplayName(string displayName) =>
        options.Issuance.SubjectCommonName == SubjectCommonName.DisplayName && displayName.Trim().Length is 0 or > EnrollmentTokens.MaxCommonNameLength
            ? Failure.Unprocessable("Token without a usable display name.",
                $"This CA puts the person's name in the certificate, and this token's display name is empty or longer than {EnrollmentTokens.MaxCommonNameLength} characters. Ask your administrator for a new token.")
            : null;

    // A minute of backdating absorbs clock skew between us and relying parties (S/MIME BR allow up to 48 h).
    private CertificateOrder Order(IssuanceGrant grant, SubscriberKey key, byte[] serial, DateTimeOffset now) =>
        new(grant.Email, grant.DisplayName, grant.Profile, key, serial, now.AddMinutes(-1), NotAfterAskedAt(now));

    /// <summary>The notAfter a certificate issued at <paramref name="now"/> is asked for (the issuer ends it with its own
    /// certificate, <see cref="CertificateIssuer.NotAfterFor"/>).</summary>
    internal DateTimeOffset NotAfterAskedAt(DateTimeOffset now) => now.AddDays(options.Issuance.ValidityDays);

    private static (IssuedCertificate Added, AuditEvent IssuedEvent) Record(IssuanceGrant grant, SubscriberKey key, string serialHex, DateTimeOffset now,
        SignedCertificate signed, string actor)
    {
        var added = new IssuedCertificate
        {
            SerialNumber = serialHex,
            Email = grant.Email,
            DisplayName = grant.DisplayName,
            Profile = grant.Profile,
            KeyAlgorithm = key.Algorithm,
            SubjectDn = signed.Subject,
            NotBefore = signed.NotBefore,
            NotAfter = signed.NotAfter,
            IssuedAt = now,
            TokenId = grant.TokenId,
            RenewalOf = grant.RenewalOf,
            MailboxValidatedAt = grant.MailboxValidatedAt,
            Der = signed.Der,
            SpkiSha256 = key.SpkiSha256,
        };
        var issuedEvent = AuditLog.Event(now, actor, AuditActions.CertificateIssued, $"certificate:{serialHex}",
            new { added.Email, profile = Names.Of(added.Profile), added.KeyAlgorithm, tokenId = grant.TokenId, renewalOf = grant.RenewalOf, added.NotAfter });
        return (added, issuedEvent);
    }

    /// <summary>The certificate and its audit record as plain inserts (DirectSql): the busiest rows, without change tracking; then every
    /// observer's rows and the caller's.</summary>
    private async Task<IssuedCertificate?> WriteRowsAsync(CertPortalDbContext w, IssuedCertificate added, AuditEvent issuedEvent, DateTimeOffset now,
        Func<CertPortalDbContext, CancellationToken, Task>? addRows, CancellationToken wct)
    {
        await DirectSql.InsertCertificateAsync(w, added, wct);
        await AuditLog.RecordNowAsync(w, issuedEvent, wct);
        foreach (var o in observers) await o.OnIssuedAsync(w, added, now, wct);
        if (addRows is not null) await addRows(w, wct);
        return added;
    }

    // Generated: the level is checked before anything is boxed or looked up (LogInformation's params array, the boxed
    // profile and the template's formatter were made for every certificate even where Information is off).
    [LoggerMessage(Level = LogLevel.Information, Message = "Issued {Profile} certificate {Serial} for {Email} ({KeyAlgorithm})")]
    private static partial void LogIssued(ILogger logger, CertificateProfileName profile, string serial, string email, string keyAlgorithm);

    /// <summary>The certificate already issued for a spent token, when <paramref name="sameRequest"/> recognises it; else null.</summary>
    internal async Task<EnrollmentResult?> CollectAsync(Guid tokenId, Func<IssuedCertificate, bool> sameRequest, CancellationToken ct)
    {
        var issued = await services.GetRequiredService<CertPortalDbContext>().Certificates.AsNoTracking().FirstOrDefaultAsync(c => c.TokenId == tokenId, ct);
        if (issued is null || !sameRequest(issued)) return null;
        return Result(issued) with { Collected = true };
    }

    internal EnrollmentResult Result(IssuedCertificate c) =>
        new(c.SerialNumber, c.Email, Names.Of(c.Profile), Pem.Certificate(c.Der), ca.ChainPem, c.NotBefore, c.NotAfter);

    /// <summary>A repeated CSR proves possession of the same key (its signature is checked again); the CSR bytes may
    /// differ (a new signature, other attributes), the public key may not.</summary>
    private static Func<IssuedCertificate, bool> SameKeyAs(string? csr, string email)
    {
        var inspected = CsrInspector.Inspect(csr, email);
        if (inspected.Failure is not null) return _ => false;
        var spki = inspected.Value!.PublicKey.ExportSubjectPublicKeyInfo();
        return c => SameKey(c, spki);
    }

    private static bool SameKey(IssuedCertificate issued, byte[] spki)
    {
        using var cert = X509CertificateLoader.LoadCertificate(issued.Der);
        return cert.PublicKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(spki);
    }
}
