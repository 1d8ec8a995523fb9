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
            .Produces(StatusCodes.Status200OK, contentType: ResponseMediaType);
        app.MapGet(CaUrls.OcspPath + "/{**request}", Get).WithTags("Revocation").WithName("OcspGet")
            .WithSummary("OCSP request as base64 in the path (RFC 5019) → OCSP response with Cache-Control, ETag, Last-Modified, Expires.")
            .Produces(StatusCodes.Status200OK, contentType: ResponseMediaType).Produces(StatusCodes.Status304NotModified);
        return app;
    }

    private static async Task<IResult> Post(HttpContext http, OcspResponder responder, TimeProvider time, CancellationToken ct)
    {
        var body = await ReadBodyAsync(http.Request, ct);
        var answer = body is null ? await responder.RespondAsync(ReadOnlyMemory<byte>.Empty, ct) : await responder.RespondAsync(body, ct);
        return new OcspResult(answer, null, time);
    }

    private static async Task<IResult> Get(HttpContext http, OcspResponder responder, CertPortalOptions options, TimeProvider time, CancellationToken ct)
    {
        var der = DecodePath(http.Request.Path.Value);
        var answer = await responder.RespondAsync(der ?? ReadOnlyMemory<byte>.Empty, ct);
        return new OcspResult(answer, options.Ocsp.HttpMaxAge, time);
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
            if (maxAge is { } limit && answer.ETag is { } etag && answer.NextUpdate is { } nextUpdate)
            {
                var now = time.GetUtcNow();
                var age = nextUpdate - now < limit ? nextUpdate - now : limit;
                if (age < TimeSpan.Zero) age = TimeSpan.Zero;
                headers.CacheControl = $"max-age={(long)age.TotalSeconds}, public, no-transform, must-revalidate";
                headers.ETag = etag;
                headers.LastModified = answer.ThisUpdate!.Value.ToString("R", CultureInfo.InvariantCulture);
                headers.Expires = (now + age).ToString("R", CultureInfo.InvariantCulture);
                if (http.Request.Headers.IfNoneMatch.Any(v => v is not null && (v == etag || v.Split(',').Any(t => t.Trim() == etag))))
                {
                    response.StatusCode = StatusCodes.Status304NotModified;
                    return Task.CompletedTask;
                }
            }
            else
                headers.CacheControl = "no-store";
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = ResponseMediaType;
            response.ContentLength = answer.Der.Length;
            return response.Body.WriteAsync(answer.Der).AsTask();
        }
    }
}
