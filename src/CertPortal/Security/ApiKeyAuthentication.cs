using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using CertPortal.Auditing;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace CertPortal.Security;

public static class Roles
{
    public const string Administrator = "administrator";
    public const string Auditor = "auditor";
    public const string RecoveryAgent = "recovery-agent";
}

public static class Policies
{
    public const string Admin = "admin";
    /// <summary>Read-only views: administrators and auditors.</summary>
    public const string Audit = "audit";
    /// <summary>Key recovery agents only (their own shares and approvals).</summary>
    public const string RecoveryAgent = "recovery-agent";
    /// <summary>Who may see recovery requests: administrators, auditors and agents.</summary>
    public const string RecoveryParticipant = "recovery-participant";
}

/// <summary>The admin API key, held only as its SHA-256 so a memory dump or log never shows it.</summary>
public sealed class AdminApiKey(byte[] sha256)
{
    public static AdminApiKey From(string key) => new(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    public bool Matches(string presented) =>
        CryptographicOperations.FixedTimeEquals(sha256, SHA256.HashData(Encoding.UTF8.GetBytes(presented)));
}

/// <summary><c>Authorization: Bearer &lt;key&gt;</c> for scripts and the admin API: the admin API key
/// (full administrator) or an account's own API key (that account's role). Challenges and
/// refusals are problem+json like every other API error.</summary>
public sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder, AdminApiKey adminKey)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";

    protected override async Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var header = Request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            return AuthenticateResult.NoResult();
        var presented = header["Bearer ".Length..].Trim();
        if (presented.Length == 0 || presented.Length > 512)
            return AuthenticateResult.Fail("invalid API key");

        if (adminKey.Matches(presented))
        {
            var identity = new ClaimsIdentity(
                [new Claim(ClaimTypes.Name, AuditActors.AdminApiKey), new Claim(ClaimTypes.Role, Roles.Administrator)], SchemeName);
            return AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName));
        }
        if (presented.StartsWith(Accounts.ApiKeyPrefix, StringComparison.Ordinal))
        {
            var known = Context.RequestServices.GetRequiredService<ApiKeyAccounts>();
            if (await known.FindAsync(presented, Context.RequestServices, Context.RequestAborted) is { } account)
                return AuthenticateResult.Success(new AuthenticationTicket(Accounts.PrincipalFor(account, SchemeName), SchemeName));
        }
        return AuthenticateResult.Fail("invalid API key");
    }

    protected override Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.Headers.WWWAuthenticate = "Bearer";
        return WriteProblem(401, "Authentication required.", "Send Authorization: Bearer <admin API key>.");
    }

    protected override Task HandleForbiddenAsync(AuthenticationProperties properties) =>
        WriteProblem(403, "Forbidden.", "Your credentials do not allow this operation.");

    private Task WriteProblem(int status, string title, string detail)
    {
        Response.StatusCode = status;
        return Results.Problem(detail: detail, statusCode: status, title: title).ExecuteAsync(Context);
    }
}
