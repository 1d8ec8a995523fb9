using System.Buffers;
using System.Globalization;
using CertPortal.Authority;

namespace CertPortal.Ocsp;

/// <summary>The OCSP responder's HTTP binding (RFC 6960 appendix A, RFC 5019 5 and 6): POST with the DER request as
/// body, or GET with it base64- and URL-encoded after <c>/ocsp/</c>, on the http <c>PublicBaseUrl</c> named in the AIA.
/// Every answer, also to a request that cannot be read, is HTTP 200 with an OCSPResponse: clients read its status.</summary>
public static class OcspApi
{
    public const string RequestMediaType = "application/ocsp-request";
    public const string ResponseMediaType = "application/ocsp-response";

    public static IServiceCollection AddOcspResponder(this IServiceCollection services)
    {
        services.AddSingleton<OcspSigners>();
        services.AddSingleton<OcspResponder>();
        services.AddHostedService(sp => sp.GetRequiredService<OcspResponder>());
        return services;
    }

    public static IEndpointRouteBuilder MapOcspApi(this IEndpointRouteBuilder app)
    {
        app.MapPost(CaUrls.OcspPath, Post).WithTags("Revocation").WithName("OcspPost")
            .WithSummary("OCSP request (application/ocsp-request body) → OCSP response; nonces are echoed.")
            // No Accepts<>(): its content-type constraint would answer 415 to clients that label the body otherwise.
            .Produces(StatusCodes.Status200OK, contentType: ResponseMediaType)
            // The body is DER whatever its label says, so it must reach the handler unread: RequestLimits reads a body labelled
            // as a form (curl --data-binary's default label) as one, which left the responder nothing to read (malformedRequest).
            // Like the GET, the answer runs straight after routing; the responder bounds what it reads itself.
            .ShortCircuit();
        // Singletons taken once: resolving them per request would create a request scope for nothing.
        var responder = app.ServiceProvider.GetRequiredService<OcspResponder>();
        var maxAge = app.ServiceProvider.GetRequiredService<CertPortalOptions>().Ocsp.HttpMaxAge;
        var time = app.ServiceProvider.GetRequiredService<TimeProvider>();
        app.MapGet(CaUrls.OcspPath + "/{**request}", (HttpContext http, CancellationToken ct) => GetAsync(http, responder, maxAge, time, ct))
            .WithTags("Revocation").WithName("OcspGet")
            .WithSummary("OCSP request as base64 in the path (RFC 5019) → OCSP response with Cache-Control, ETag, Last-Modified, Expires.")
            .Produces(StatusCodes.Status200OK, contentType: ResponseMediaType).Produces(StatusCodes.Status304NotModified)
            // Relying parties ask anonymously, often: the answer runs straight after routing, without the middleware
            // that pages and the authenticated API need (authentication, status-code pages, Swagger, the pages' headers).
            .ShortCircuit();
        return app;
    }

    private static async Task<IResult> Post(HttpContext http, OcspResponder responder, TimeProvider time, CancellationToken ct)
    {
        var body = await ReadBodyAsync(http.Request, ct);
        var answer = body is null ? await responder.RespondAsync(ReadOnlyMemory<byte>.Empty, ct) : await responder.RespondAsync(body, ct);
        return new OcspResult(answer, null, time);
    }

    private static async ValueTask<IResult> GetAsync(HttpContext http, OcspResponder responder, TimeSpan maxAge, TimeProvider time, CancellationToken ct)
    {
        var path = http.Request.Path.Value;
        if (responder.TryAnswerByPath(path, out var known)) return new OcspResult(known, maxAge, time);
        var der = DecodePath(path);
        var answer = await responder.RespondAsync(der ?? ReadOnlyMemory<byte>.Empty, ct, der is null ? null : path);
        return new OcspResult(answer, maxAge, time);
    }

    /// <summary>Null when the body is larger than any OCSP request.</summary>
    private static async Task<byte[]?> ReadBodyAsync(HttpRequest request, CancellationToken ct)
    {
        if (request.ContentLength > OcspRequest.MaxBytes) return null;
        var buffer = new byte[OcspRequest.MaxBytes + 1];
        var length = 0;
        int read;
        while (length < buffer.Length && (read = await request.Body.ReadAsync(buffer.AsMemory(length), ct)) > 0) length += read;
        return length > OcspRequest.MaxBytes ? null : buffer[..length];
    }

    /// <summary>The request after <c>/ocsp/</c>: base64, URL-encoded (RFC 5019 5). The server has already decoded all but
    /// %2F; clients that leave '/' unescaped and base64url are accepted too.</summary>
    internal static byte[]? DecodePath(string? path)
    {
        var prefix = CaUrls.OcspPath + "/";
        if (path is null || path.Length <= prefix.Length || path.Length > OcspRequest.MaxBytes * 2) return null;
        var text = Uri.UnescapeDataString(path[prefix.Length..]).Replace('-', '+').Replace('_', '/');
        if (text.Length % 4 != 0) text = text.PadRight(text.Length + 4 - text.Length % 4, '=');
        var bytes = new byte[text.Length / 4 * 3];
        return Convert.TryFromBase64String(text, bytes, out var written) ? bytes[..written] : null;
    }

    /// <summary>RFC 5019 6.2: a signed response to a GET without nonce may be kept by HTTP caches until shortly
    /// before it would change (<c>Ocsp:HttpMaxAge</c>, never past nextUpdate); everything else must not be kept.</summary>
    private sealed class OcspResult(OcspAnswer answer, TimeSpan? maxAge, TimeProvider time) : IResult
    {
        public Task ExecuteAsync(HttpContext http)
        {
            var response = http.Response;
            var headers = response.Headers;
            headers.XContentTypeOptions = "nosniff";
            if (maxAge is { } limit && answer.ETag is { } etag && answer.NextUpdate is { } nextUpdate)
            {
                var caching = HttpCaching.For(answer, nextUpdate, limit, time.GetUtcNow());
                headers.CacheControl = caching.CacheControl;
                headers.ETag = etag;
                headers.LastModified = caching.LastModified;
                headers.Expires = caching.Expires;
                if (Matches(http.Request.Headers.IfNoneMatch, etag))
                {
                    response.StatusCode = StatusCodes.Status304NotModified;
                    return Task.CompletedTask;
                }
            }
            else
                headers.CacheControl = "no-store";
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = ResponseMediaType;
            response.ContentLength = answer.Length;
            var body = response.BodyWriter;
            body.Write(answer.Der);
            if (answer.Certificate is { } certificate) body.Write(certificate);
            return body.FlushAsync().AsTask();
        }

        /// <summary>If-None-Match: one of the listed tags (or a list in one header value) is the response's.</summary>
        private static bool Matches(Microsoft.Extensions.Primitives.StringValues ifNoneMatch, string etag)
        {
            foreach (var value in ifNoneMatch)
            {
                if (value is null) continue;
                if (value == etag) return true;
                foreach (var tag in value.Split(','))
                    if (tag.Trim() == etag) return true;
            }
            return false;
        }
    }

    /// <summary>An answer's HTTP caching headers for one second of the clock: every GET within that second sends the same
    /// strings, so they are formatted once a second per cached response rather than per request. max-age counts from the
    /// end of the second, so it never reaches past nextUpdate whenever in the second it is sent.</summary>
    internal sealed record HttpCaching(long Second, string CacheControl, string LastModified, string Expires)
    {
        public static HttpCaching For(OcspAnswer answer, DateTimeOffset nextUpdate, TimeSpan limit, DateTimeOffset now)
        {
            var second = now.ToUnixTimeSeconds();
            if (answer.Caching is { } cached && cached.Second == second) return cached;
            var start = DateTimeOffset.FromUnixTimeSeconds(second);
            var left = nextUpdate - start.AddSeconds(1);
            var age = left < limit ? left : limit;
            if (age < TimeSpan.Zero) age = TimeSpan.Zero;
            var made = new HttpCaching(second, $"max-age={(long)age.TotalSeconds}, public, no-transform, must-revalidate",
                answer.ThisUpdate!.Value.ToString("R", CultureInfo.InvariantCulture), (start + age).ToString("R", CultureInfo.InvariantCulture));
            // Racing requests may each make one; any of them is right for this second.
            answer.Caching = made;
            return made;
        }
    }
}
