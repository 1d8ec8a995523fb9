using CertPortal.Security;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Diagnostics;

namespace CertPortal.Pages;

/// <summary>The browser side: Razor Pages for "Get A Digital ID" and the admin console, cookie sign-in
/// for people, and the security headers every page gets. The API keeps its bearer keys.</summary>
public static class WebUi
{
    /// <summary>Chooses per request: /api uses bearer keys (401/403 as problem+json), pages use the cookie.</summary>
    public const string SmartScheme = "CertPortal";

    public static AuthenticationBuilder AddWebUiAuthentication(this IServiceCollection services)
    {
        services.AddRazorPages(o =>
        {
            o.Conventions.AuthorizeFolder("/Admin", Policies.RecoveryParticipant);
        });
        // Secure whenever the request is https (directly or through a configured proxy), like the session cookie.
        services.AddMemoryCache();
        services.AddSingleton<ConsoleSessions>();
        services.AddSingleton<ApiKeyAccounts>();
        services.AddAntiforgery(o => o.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest);
        return services.AddAuthentication(SmartScheme)
            .AddPolicyScheme(SmartScheme, "API key or cookie", o =>
                o.ForwardDefaultSelector = ctx => ctx.Request.Path.StartsWithSegments("/api")
                    ? ApiKeyAuthenticationHandler.SchemeName
                    : CookieAuthenticationDefaults.AuthenticationScheme)
            .AddCookie(CookieAuthenticationDefaults.AuthenticationScheme, o =>
            {
                o.LoginPath = "/account/login";
                o.LogoutPath = "/account/logout";
                o.AccessDeniedPath = "/account/denied";
                o.Cookie.Name = "certportal";
                o.Cookie.HttpOnly = true;
                o.Cookie.SameSite = SameSiteMode.Strict;
                o.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
                o.ExpireTimeSpan = TimeSpan.FromHours(8);
                o.SlidingExpiration = true;
                o.Events.OnValidatePrincipal = ConsoleSessions.ValidateAsync;
            });
    }

    /// <summary>Whether the request was made to the API. Asked from the exception handler and the error page,
    /// where the path is already the error page's (UseExceptionHandler rewrites it before calling the
    /// IExceptionHandlers), so the original path comes from the re-execute features when present.</summary>
    public static bool IsApiRequest(HttpContext context)
    {
        var original = context.Features.Get<IExceptionHandlerPathFeature>()?.Path
            ?? context.Features.Get<IStatusCodeReExecuteFeature>()?.OriginalPath
            ?? context.Request.Path.Value;
        return new PathString(original).StartsWithSegments("/api");
    }

    /// <summary>API requests get problem+json; browser requests an HTML page with a way back (Pages/Error.cshtml),
    /// for status codes without a body (404, a 400 from a failed antiforgery check) and for exceptions.</summary>
    public static void UseErrorPages(this WebApplication app)
    {
        app.UseExceptionHandler(new ExceptionHandlerOptions
        {
            ExceptionHandlingPath = "/error",
            StatusCodeSelector = e => e is BadHttpRequestException { StatusCode: >= 400 and < 500 } bad ? bad.StatusCode
                : app.Lifetime.ApplicationStopping.IsCancellationRequested ? StatusCodes.Status503ServiceUnavailable
                : StatusCodes.Status500InternalServerError,
        });
        // One re-execute for both: the error page answers /api requests with problem+json.
        app.UseStatusCodePagesWithReExecute("/error");
    }

    /// <summary>Pages with a person's token or an administrator's view must not be kept by the browser or any
    /// cache: Back after a successful enrollment must not show a usable form, and a shared computer's history
    /// must not show the console after sign-out.</summary>
    public static void UsePrivatePageCaching(this WebApplication app) => app.Use(async (ctx, next) =>
    {
        var path = ctx.Request.Path;
        if (ctx.User.Identity?.IsAuthenticated == true || path.StartsWithSegments("/enroll") || path.StartsWithSegments("/admin") ||
            path.StartsWithSegments("/account") || path.StartsWithSegments("/setup"))
            ctx.Response.Headers.CacheControl = "no-store";
        await next();
    });

    /// <summary>No inline script anywhere (CSP), no framing, no referrer: enrollment links carry tokens.</summary>
    public static void UseSecurityHeaders(this WebApplication app) => app.Use(async (ctx, next) =>
    {
        var h = ctx.Response.Headers;
        if (!ctx.Request.Path.StartsWithSegments("/swagger"))
            h.ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
                "frame-ancestors 'none'; object-src 'none'; base-uri 'none'; form-action 'self'";
        else
            h.ContentSecurityPolicy = "frame-ancestors 'none'; object-src 'none'; base-uri 'none'";
        h.XContentTypeOptions = "nosniff";
        h.XFrameOptions = "DENY";
        h["Referrer-Policy"] = "no-referrer";
        if (ctx.Request.IsHttps) h.StrictTransportSecurity = "max-age=31536000";
        await next();
    });
}
