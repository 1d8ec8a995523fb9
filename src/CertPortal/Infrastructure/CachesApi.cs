using CertPortal.Gal;
using CertPortal.Ocsp;
using CertPortal.Security;
using Microsoft.AspNetCore.Http.HttpResults;

namespace CertPortal.Infrastructure;

/// <summary>How full this node's bounded in-memory caches are, against the bounds that decide its memory
/// (<c>Lookup:MaxCacheBytes</c>, <c>Ocsp:MaxCacheBytes</c>): what an operator sizing them needs, and how the memory
/// benchmark tells that its warm-up is over (the caches have reached their bounds or stopped growing).</summary>
public static class CachesApi
{
    public static IEndpointRouteBuilder MapCachesApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/v1/caches", Get).RequireAuthorization(Policies.Audit).WithTags("Operations").WithName("Caches")
            .WithSummary("This node's look-up and OCSP caches: entries and bytes held, against their configured bounds.");
        return app;
    }

    private static Ok<CachesStatus> Get(RecipientCache lookup, OcspResponder ocsp, CertPortalOptions options) =>
        TypedResults.Ok(new CachesStatus(
            new CacheStatus(lookup.Count, lookup.CachedBytes, options.Lookup.MaxMailboxes, options.Lookup.MaxCacheBytes, lookup.Loads),
            new CacheStatus(ocsp.CachedResponses, ocsp.CachedBytes, options.Ocsp.MaxCachedResponses, options.Ocsp.MaxCacheBytes, null)));
}

/// <param name="Lookup">Recipient look-up answers, by mailbox.</param>
/// <param name="Ocsp">Signed OCSP responses, by certificate.</param>
public sealed record CachesStatus(CacheStatus Lookup, CacheStatus Ocsp);

/// <param name="Entries">Entries held now (mailboxes, or responses).</param>
/// <param name="Bytes">What they take, as counted against <paramref name="MaxBytes"/>.</param>
/// <param name="MaxEntries">The configured bound on entries; 0 turns the cache off.</param>
/// <param name="MaxBytes">The configured bound on bytes; 0 turns the cache off.</param>
/// <param name="DatabaseReads">Reads of the database made for misses since the node started (look-up only).</param>
public sealed record CacheStatus(int Entries, long Bytes, int MaxEntries, long MaxBytes, long? DatabaseReads);
