using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Security;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Revocation;

public sealed record CertificateView(string SerialNumber, string Email, string DisplayName, string Profile, string KeyAlgorithm,
    string Status, string SubjectDn, DateTimeOffset NotBefore, DateTimeOffset NotAfter, DateTimeOffset IssuedAt, DateTimeOffset MailboxValidatedAt,
    DateTimeOffset? RevokedAt, string? RevocationReason, string Sha256Fingerprint, string CertificatePem)
{
    public static CertificateView From(IssuedCertificate c, DateTimeOffset now) => new(c.SerialNumber, c.Email, c.DisplayName,
        Names.Of(c.Profile), c.KeyAlgorithm, Names.Of(c.StatusAt(now)), c.SubjectDn, c.NotBefore, c.NotAfter, c.IssuedAt, c.MailboxValidatedAt, c.RevokedAt,
        c.RevocationReason?.ToRfcName(), c.Sha256Fingerprint, Pem.Certificate(c.Der));

    /// <summary>Only in the answer to a revocation: the other certificates it revoked for keyCompromise, those for the same key and
    /// those renewed on the strength of it (<see cref="CompromisedRenewals"/>); empty for other reasons.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<string>? AlsoRevoked { get; init; }
}

public sealed record CertificatePage(int Page, int PageSize, int Total, IReadOnlyList<CertificateView> Items);

/// <param name="DeltaOf">For a delta CRL, the number of the complete CRL it updates; null for a complete CRL.</param>
public sealed record CrlStatus(string Authority, long Number, DateTimeOffset ThisUpdate, DateTimeOffset NextUpdate, int Entries, string Url, long? DeltaOf = null);

public static class CertificatesApi
{
    public static IEndpointRouteBuilder MapCertificatesApi(this IEndpointRouteBuilder app)
    {
        var certs = app.MapGroup("/api/v1/certificates").WithTags("Certificates");
        certs.MapGet("/", Search).RequireAuthorization(Policies.Audit).WithName("SearchCertificates")
            .WithSummary("Search certificates by mailbox, serial or status (paged).");
        certs.MapGet("/{serialNumber}", Get).WithName("GetCertificate")
            .WithSummary("A certificate's record: mailbox, profile, status, revocation, PEM.");
        certs.MapPost("/{serialNumber}/revoke", Revoke).RequireAuthorization(Policies.Admin).WithName("RevokeCertificate")
            .WithSummary("Revoke with an RFC 5280 reason (certificateHold places a hold). Revoking twice changes nothing. keyCompromise also " +
                "revokes the key's other certificates and the renewals proven by it, listed in alsoRevoked.");
        certs.MapPost("/{serialNumber}/release", Release).RequireAuthorization(Policies.Admin).WithName("ReleaseHold")
            .WithSummary("Release a certificateHold: the certificate leaves the CRL.");

        app.MapGet("/api/v1/crls", CrlStatusList).WithTags("Revocation").WithName("CrlStatus")
            .WithSummary("The current CRL of each CA: number, thisUpdate, nextUpdate, entries.");

        // The URLs written into certificates (CRL DP, AIA caIssuers): public, DER, cacheable.
        // HEAD too: CRL fetchers (dirmngr, proxies) check freshness without the body; conditional GETs get 304.
        app.MapMethods(CaUrls.IssuingCrlPath, [HttpMethods.Get, HttpMethods.Head], (CrlPublisher crls, HttpResponse response, CancellationToken ct) => ServeCrl(crls, response, CertificateAuthority.IssuingName, ct))
            .WithTags("Revocation").WithName("IssuingCrl");
        app.MapMethods(CaUrls.RootCrlPath, [HttpMethods.Get, HttpMethods.Head], (CrlPublisher crls, HttpResponse response, CancellationToken ct) => ServeCrl(crls, response, CertificateAuthority.RootName, ct))
            .WithTags("Revocation").WithName("RootCrl");
        app.MapMethods(CaUrls.IssuingDeltaCrlPath, [HttpMethods.Get, HttpMethods.Head],
                (CrlPublisher crls, HttpResponse response, CancellationToken ct) => ServeCrl(crls, response, CertificateAuthority.IssuingName, ct, delta: true))
            .WithTags("Revocation").WithName("IssuingDeltaCrl");
        app.MapGet(CaUrls.IssuingCertPath, (CaHierarchy ca) => TypedResults.Bytes(ca.Issuing.Certificate.RawData, "application/pkix-cert", "issuing.crt")).WithTags("CA").WithName("IssuingCaCertificate");
        app.MapGet(CaUrls.RootCertPath, (CaHierarchy ca) => TypedResults.Bytes(ca.Root.Certificate.RawData, "application/pkix-cert", "root.crt")).WithTags("CA").WithName("RootCaCertificate");
        app.MapGet(CaUrls.RootPemPath, (CaHierarchy ca) => TypedResults.Text(ca.Root.Certificate.ExportCertificatePem() + "\n", "application/x-pem-file")).WithTags("CA").WithName("RootCaCertificatePem");
        app.MapGet(CaUrls.ChainPemPath, (CaHierarchy ca) => TypedResults.Text(ca.ChainPem, "application/pem-certificate-chain")).WithTags("CA").WithName("CaChain");
        return app;
    }

    private static async Task<Results<Ok<CertificateView>, ProblemHttpResult>> Get(string serialNumber, CertPortalDbContext db, TimeProvider time, CancellationToken ct)
    {
        if (!SerialNumber.TryNormalize(serialNumber, out var serial))
            return Failure.BadRequest("The serial number must be hexadecimal (colons allowed).").ToProblem();
        var cert = await db.Certificates.AsNoTracking().FirstOrDefaultAsync(c => c.SerialNumber == serial, ct);
        return cert is null
            ? Failure.NotFound($"No certificate with serial number {serial} was issued by this CA.").ToProblem()
            : TypedResults.Ok(CertificateView.From(cert, time.GetUtcNow()));
    }

    private static async Task<Results<Ok<CertificatePage>, ProblemHttpResult>> Search(CertPortalDbContext db, TimeProvider time,
        string? email, string? serialNumber, string? status, int? page, int? pageSize, CancellationToken ct)
    {
        var outcome = await SearchAsync(db, time.GetUtcNow(), email, serialNumber, status, page, pageSize, ct);
        return outcome.Failure is { } f ? f.ToProblem() : TypedResults.Ok(outcome.Value!);
    }

    /// <summary>Certificates by mailbox (substring), serial (prefix) and status, newest first; shared by the API and the console.</summary>
    public static async Task<Outcome<CertificatePage>> SearchAsync(CertPortalDbContext db, DateTimeOffset now,
        string? email, string? serialNumber, string? status, int? page, int? pageSize, CancellationToken ct)
    {
        var size = Math.Clamp(pageSize ?? 25, 1, 200);
        var number = Math.Max(page ?? 1, 1);
        var q = db.Certificates.AsNoTracking();
        // Case-insensitive: people type ALICE@EXAMPLE.COM (mailboxes are ASCII, so lower() is exact on both databases).
        if (!string.IsNullOrWhiteSpace(email))
        {
            var needle = email.Trim().ToLowerInvariant();
#pragma warning disable CA1862 // EF translates ToLower().Contains to SQL; the StringComparison overload does not translate
            q = q.Where(c => c.Email.ToLower().Contains(needle));
#pragma warning restore CA1862
        }
        if (!string.IsNullOrWhiteSpace(serialNumber))
        {
            var s = serialNumber.Replace(":", "").Trim().ToUpperInvariant();
            q = q.Where(c => c.SerialNumber.StartsWith(s));
        }
        if (!string.IsNullOrWhiteSpace(status))
        {
            if (!Enum.TryParse<CertificateStatus>(status, true, out var st) || !Enum.IsDefined(st))
                return Failure.BadRequest("status must be one of valid, revoked, onHold, expired, notYetValid.");
            q = st switch
            {
                CertificateStatus.Revoked => q.Where(c => c.RevokedAt != null && c.RevocationReason != RevocationReason.CertificateHold),
                CertificateStatus.OnHold => q.Where(c => c.RevocationReason == RevocationReason.CertificateHold),
                CertificateStatus.Expired => q.Where(c => c.RevokedAt == null && c.NotAfter <= now),
                CertificateStatus.NotYetValid => q.Where(c => c.RevokedAt == null && c.NotBefore > now),
                _ => q.Where(c => c.RevokedAt == null && c.NotAfter > now && c.NotBefore <= now),
            };
        }
        var total = await q.CountAsync(ct);
        var items = await q.OrderByDescending(c => c.IssuedAt).Skip(Paging.Offset(number, size)).Take(size).ToListAsync(ct);
        return new CertificatePage(number, size, total, items.Select(c => CertificateView.From(c, now)).ToList());
    }

    private static async Task<Results<Ok<CertificateView>, ProblemHttpResult>> Revoke(string serialNumber, [FromBody] RevokeRequest request,
        RevocationService revocation, TimeProvider time, HttpContext http, CancellationToken ct)
    {
        var outcome = await revocation.RevokeAsync(serialNumber, request, AuditLog.ActorOf(http.User), ct);
        return outcome.Failure is { } f ? f.ToProblem()
            : TypedResults.Ok(CertificateView.From(outcome.Value!.Certificate, time.GetUtcNow()) with { AlsoRevoked = outcome.Value.AlsoRevoked });
    }

    private static async Task<Results<Ok<CertificateView>, ProblemHttpResult>> Release(string serialNumber,
        RevocationService revocation, TimeProvider time, HttpContext http, CancellationToken ct)
    {
        var outcome = await revocation.ReleaseHoldAsync(serialNumber, AuditLog.ActorOf(http.User), ct);
        return outcome.Failure is { } f ? f.ToProblem() : TypedResults.Ok(CertificateView.From(outcome.Value!, time.GetUtcNow()));
    }

    /// <summary>From memory (the publisher keeps the latest CRL of each CA), with ETag and Last-Modified so
    /// conditional requests get 304 Not Modified. Written as a stream, 64 KiB at a time, each write waiting for the
    /// connection to take the previous ones: Kestrel copies a body written at once (an array result) into its memory
    /// pool whole before sending any of it, so every download in flight held a full copy of the CRL there, and the pool
    /// keeps its high-water mark (46 MB a download at a million entries; memory pass nine).
    /// <c>Cache-Control: public, no-cache</c>: a shared cache (a proxy in front of the mail gateways) may keep the CRL but must
    /// ask again before each use, a 304 by ETag while it is current. Without it, RFC 9111 §4.2.2 lets a cache reuse a response
    /// with Last-Modified for a tenth of its age unasked: a CRL an hour old could go on being served for six minutes after a
    /// revocation had replaced it. A client (or that cache) revalidating a CRL newer than this node's, which another node
    /// signed since this one last looked, gets the newer CRL's 304, not this node's older CRL in its place.</summary>
    private static async Task<Results<FileStreamHttpResult, ProblemHttpResult>> ServeCrl(CrlPublisher crls, HttpResponse response, string authority,
        CancellationToken ct, bool delta = false)
    {
        var ifNoneMatch = response.HttpContext.Request.Headers.IfNoneMatch;
        var crl = await crls.ServedAsync(authority, ct, delta, ifNoneMatch.Count == 0 ? null : PublishedCrl.NewestNumberIn(ifNoneMatch, authority));
        if (crl is null)
            return Failure.NotFound(delta ? "Delta CRLs are not enabled (Crl:DeltaBaseInterval), or none has been signed yet." : "No CRL has been signed yet.").ToProblem();
        response.Headers.CacheControl = "public, no-cache";
        return TypedResults.Stream(new MemoryStream(crl.Der, writable: false), "application/pkix-crl", delta ? $"{authority}-delta.crl" : $"{authority}.crl",
                lastModified: crl.ThisUpdate, entityTag: new Microsoft.Net.Http.Headers.EntityTagHeaderValue(crl.ETag));
    }

    private static async Task<Ok<List<CrlStatus>>> CrlStatusList(CrlPublisher crls, CaHierarchy ca, CancellationToken ct)
    {
        var list = new List<CrlStatus>();
        foreach (var (authority, url) in new[] { (CertificateAuthority.IssuingName, ca.Urls.IssuingCrl), (CertificateAuthority.RootName, ca.Urls.RootCrl) })
            if (await crls.ServedAsync(authority, ct) is { } crl)
                list.Add(new CrlStatus(authority, crl.Number, crl.ThisUpdate, crl.NextUpdate, crl.EntryCount, url));
        if (await crls.ServedAsync(CertificateAuthority.IssuingName, ct, delta: true) is { } delta)
            list.Add(new CrlStatus(CertificateAuthority.IssuingName, delta.Number, delta.ThisUpdate, delta.NextUpdate, delta.EntryCount, ca.Urls.IssuingDeltaCrl,
                delta.DeltaOf));
        return TypedResults.Ok(list);
    }
}

public static class Pem
{
    private const string CertificateLabel = "CERTIFICATE";

    /// <summary>The certificate as PEM with a final line feed, written straight into the one string (every enrollment
    /// answer carries it; PemEncoding.Write's char array, a string of it and a copy with the line feed were three).</summary>
    public static string Certificate(byte[] der) =>
        string.Create(System.Security.Cryptography.PemEncoding.GetEncodedSize(CertificateLabel.Length, der.Length) + 1, der, static (chars, der) =>
        {
            if (!System.Security.Cryptography.PemEncoding.TryWrite(CertificateLabel, der, chars, out var written) || written != chars.Length - 1)
                throw new InvalidOperationException("PEM encoding did not fill its computed size.");
            chars[written] = '\n';
        });
}
