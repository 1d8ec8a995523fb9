using CertPortal.Security;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;

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
            });
    }

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
