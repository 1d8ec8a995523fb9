using System.Text.Json.Serialization;
using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Cluster;
using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Escrow;
using CertPortal.Gal;
using CertPortal.Infrastructure;
using CertPortal.Mail;
using CertPortal.Ocsp;
using CertPortal.Renewal;
using CertPortal.Pages;
using CertPortal.Revocation;
using CertPortal.Security;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Migrations;
using Microsoft.Extensions.Options;

namespace CertPortal;

public static class Extensions
{
    public const string DefaultUrl = "http://127.0.0.1:5000";
    private const string RequestLogCategory = "Microsoft.AspNetCore.Hosting.Diagnostics";

    public static void AddCertPortal(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        var configuration = builder.Configuration;

        // Embedded default: loopback only. --urls / ASPNETCORE_URLS override it.
        if (string.IsNullOrEmpty(configuration["urls"]) && string.IsNullOrEmpty(configuration["http_ports"]) && string.IsNullOrEmpty(configuration["https_ports"]))
            builder.WebHost.UseUrls(DefaultUrl);
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = RequestLimits.MaxBodyBytes);
        // ASP.NET Core's request log is off unless configured for its category (README, Deployment: it prints full URLs,
        // and links mailed by old versions carried tokens in the query). Off means off at every level: while the category
        // is enabled at all, hosting starts an Activity and a log scope for every request, about 40 % of what a look-up or
        // an OCSP GET from memory allocated, and the garbage collections that follow were most of those paths' p99.
        if (configuration[$"Logging:LogLevel:{RequestLogCategory}"] is null) builder.Logging.AddFilter(RequestLogCategory, LogLevel.None);

        services.AddOptions<CertPortalOptions>().Bind(configuration.GetSection(CertPortalOptions.Section))
            .PostConfigure(o =>
            {
                if (string.IsNullOrWhiteSpace(o.PublicBaseUrl)) o.PublicBaseUrl = DefaultPublicBaseUrl(configuration);
                // On loopback (development, tests) the portal and the CRL/AIA base may be one http address.
                if (string.IsNullOrWhiteSpace(o.PortalUrl) && CertPortalOptions.IsLoopback(o.PublicBaseUrl)) o.PortalUrl = o.PublicBaseUrl;
            })
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<CertPortalOptions>, CertPortalOptionsValidator>();
        services.AddSingleton(sp => sp.GetRequiredService<IOptions<CertPortalOptions>>().Value);
        services.AddSingleton(TimeProvider.System);

        AddDatabase(services, configuration);

        services.AddSingleton<CaKeyStore>();
        services.AddSingleton<SharedCa>();
        services.AddSingleton(sp => sp.GetRequiredService<SharedCa>().Hierarchy);
        services.AddSingleton(sp => new KeyEncryptionSecret(() => sp.GetRequiredService<SharedCa>().Passphrase));
        services.AddSharedDataProtection();
        services.AddSingleton<CertificateIssuer>();
        services.AddScoped<EnrollmentTokens>();
        services.AddScoped<Accounts>();
        services.AddScoped<SignInThrottle>();
        services.AddSingleton<SignInNames>();
        builder.AddDirectoryPublishing();
        builder.AddMail();
        builder.AddRenewal();
        services.AddSingleton(sp => new AgentShareEncryption(new AgentCertificateValidator(sp.GetRequiredService<TimeProvider>())));
        services.AddSingleton<KeyArchive>();
        services.AddSingleton<RecoverySessionKey>();
        services.AddScoped<RecoveryAgentRegistry>();
        services.AddScoped<EscrowPolicyEditor>();
        services.AddScoped<KeyRecovery>();
        services.AddScoped<ServerKeyEnrollment>();
        services.AddHostedService<RecoveryExpiryWorker>();
        services.AddSingleton<RecipientCache>();
        services.AddHostedService(sp => sp.GetRequiredService<RecipientCache>());
        services.AddSingleton<ICertificateEvents, RecipientCacheEvents>();
        services.AddSingleton<RecipientCacheInvalidation>();
        services.AddSingleton<GroupCommitWriter>();
        services.AddHostedService(sp => sp.GetRequiredService<GroupCommitWriter>());
        services.AddScoped<EnrollmentService>();
        services.AddScoped<CrlSigner>();
        services.AddScoped<RevocationService>();
        services.AddSingleton<CrlPublisher>();
        services.AddHostedService(sp => sp.GetRequiredService<CrlPublisher>());
        services.AddOcspResponder();

        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<CertPortalOptions>();
            var logger = sp.GetRequiredService<ILoggerFactory>().CreateLogger("CertPortal.AdminApiKey");
            return AdminApiKey.From(SecretFile.ReadOrCreate(o.AdminApiKey, Path.Combine(o.ResolvedDataDirectory, "admin-api-key"), "admin API key",
                CertPortalOptionsValidator.MinimumAdminApiKeyLength, logger));
        });
        services.AddReverseProxySupport();
        services.AddWebUiAuthentication()
            .AddScheme<AuthenticationSchemeOptions, ApiKeyAuthenticationHandler>(ApiKeyAuthenticationHandler.SchemeName, null);
        services.AddAuthorizationBuilder()
            .AddPolicy(Policies.Admin, p => p.RequireRole(Roles.Administrator))
            .AddPolicy(Policies.Audit, p => p.RequireRole(Roles.Administrator, Roles.Auditor))
            .AddPolicy(Policies.RecoveryAgent, p => p.RequireRole(Roles.RecoveryAgent))
            .AddPolicy(Policies.RecoveryParticipant, p => p.RequireRole(Roles.Administrator, Roles.Auditor, Roles.RecoveryAgent));

        services.Configure<JsonOptions>(o => o.SerializerOptions.Converters.Add(new JsonStringEnumConverter(System.Text.Json.JsonNamingPolicy.CamelCase)));
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        services.AddProblemDetails();
        services.AddExceptionHandler<ProblemExceptionHandler>();
        services.AddHealthChecks().AddCheck<DatabaseHealthCheck>("database").AddCheck<IssuingCaHealthCheck>("issuing-ca");
        services.AddEndpointsApiExplorer();
        services.AddSwaggerGen(c =>
        {
            c.SwaggerDoc("v1", new Microsoft.OpenApi.OpenApiInfo
            {
                Title = "CertPortal API",
                Version = "v1",
                Description = "S/MIME certificate enrollment, recipient directory and revocation. Admin calls need Authorization: Bearer <admin API key>.",
            });
            c.AddSecurityDefinition("Bearer", new Microsoft.OpenApi.OpenApiSecurityScheme
            {
                Type = Microsoft.OpenApi.SecuritySchemeType.Http,
                Scheme = "bearer",
                Description = "The admin API key (CertPortal:AdminApiKey or DataDirectory/admin-api-key).",
            });
        });
    }

    private static void AddDatabase(IServiceCollection services, IConfiguration configuration)
    {
        var db = configuration.GetSection(CertPortalOptions.Section).Get<CertPortalOptions>()?.Database ?? new DatabaseOptions();
        if (db.Provider == DatabaseProvider.Postgres)
        {
            // Pooled contexts (options built once, their inputs are singletons): every request and every group write
            // uses a context, and creating one from scratch cost more than the query it ran.
            services.AddDbContextPool<CertPortalDbContext, NpgsqlCertPortalDbContext>((sp, o) =>
                o.UseNpgsql(PostgresConnections.Tune(db.ConnectionString)).AddInterceptors(sp.GetRequiredService<RecipientCacheInvalidation>(), DirectSql.FlushBeforeEfCommands));
            services.AddSingleton(_ => new PostgresReadConnections(db.ConnectionString!));
            return;
        }
        // Before any connection opens: a commit's WAL frames in one write (see the class).
        SqliteWalWrites.Install();
        services.AddDbContextPool<CertPortalDbContext, SqliteCertPortalDbContext>((sp, o) =>
            o.UseSqlite(SqliteConnectionString(sp)).AddInterceptors(SqliteDurability.Instance, sp.GetRequiredService<RecipientCacheInvalidation>()));
        services.AddSingleton(sp => new SqliteReadConnections(SqliteConnectionString(sp)));
        services.AddSingleton(sp => new SqliteProcessLock(SqliteConnectionString(sp)));
    }

    private static string SqliteConnectionString(IServiceProvider services)
    {
        var options = services.GetRequiredService<CertPortalOptions>();
        return string.IsNullOrWhiteSpace(options.Database.ConnectionString)
            ? $"Data Source={Path.Combine(options.ResolvedDataDirectory, "certportal.db")};Default Timeout=60"
            : options.Database.ConnectionString;
    }

    private static string DefaultPublicBaseUrl(IConfiguration configuration)
    {
        var first = (configuration["urls"] ?? DefaultUrl).Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .FirstOrDefault(u => u.StartsWith("http://", StringComparison.OrdinalIgnoreCase)) ?? DefaultUrl;
        // Wildcard listen addresses are not addresses a relying party can fetch from.
        return first.Replace("://+", "://localhost").Replace("://*", "://localhost").Replace("://0.0.0.0", "://localhost")
            .Replace("://[::]", "://localhost").TrimEnd('/');
    }

    /// <summary>First start creates the data directory, the schema, the CA and its first CRLs; later starts
    /// apply new migrations and load the CA. Any failure stops start-up with the reason.</summary>
    public static async Task InitializeCertPortalAsync(this WebApplication app)
    {
        var options = app.Services.GetRequiredService<CertPortalOptions>();
        try
        {
            await app.Services.PrepareDatabaseAsync(async (db, ct) =>
            {
                await app.Services.GetRequiredService<SharedCa>().LoadOrCreateAsync(db, new CaUrls(options.PublicBaseUrl!), ct);
                await app.Services.GetRequiredService<RecoverySessionKey>().LoadOrCreateAsync(db, ct);
                await app.Services.GetRequiredService<OcspSigners>().RefreshAsync(db, ct);
            });
            app.Services.GetRequiredService<AdminApiKey>();
            await app.Services.GetRequiredService<CrlPublisher>().PublishAsync(CancellationToken.None);
        }
        catch
        {
            // A start that failed lets go of the SQLite database at once, not when its process ends: a host started again
            // in the same process (tests do) must not find it still held.
            app.Services.GetService<SqliteProcessLock>()?.Dispose();
            throw;
        }
        if (app.Services.GetService<SqliteProcessLock>()?.DatabaseFile is { } database && SqliteProcessLock.FileLockingDisabled)
            app.Logger.LogWarning("File locking is switched off (DOTNET_SYSTEM_IO_DISABLEFILELOCKING): nothing stops a second CertPortal " +
                "process on the SQLite database {Database}, which serves one process only", database);
        var ca = app.Services.GetRequiredService<CaHierarchy>();
        app.Logger.LogInformation("CertPortal ready: issuing CA {Issuer}, public base URL {BaseUrl}, data in {DataDirectory}",
            ca.Issuing.Certificate.Subject, ca.Urls.BaseUrl, options.ResolvedDataDirectory);
    }

    /// <summary>Creates the data directory and applies migrations (all the admin commands need), then runs
    /// <paramref name="whileLocked"/>: on PostgreSQL all of it under the start-up lock, so nodes starting at
    /// once migrate and create shared state one at a time. On SQLite, first takes the database for this process until it
    /// ends (<see cref="SqliteProcessLock"/>), or throws <see cref="DatabaseInUseException"/> having written nothing. A database
    /// a newer version migrated throws <see cref="DatabaseNewerException"/>, having written nothing but the migrations table
    /// where it was missing.</summary>
    public static async Task PrepareDatabaseAsync(this IServiceProvider services, Func<CertPortalDbContext, CancellationToken, Task>? whileLocked = null)
    {
        services.GetService<SqliteProcessLock>()?.Take();
        Directory.CreateDirectory(services.GetRequiredService<CertPortalOptions>().ResolvedDataDirectory);
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        await using (await db.LockStartupAsync(CancellationToken.None))
        {
            // EF Core reads the migrations table before creating it; on a new PostgreSQL database that read fails and is
            // logged as an error at the first start of every deployment. Creating it first (what Migrate would do next)
            // keeps the log of a healthy start free of failures.
            await db.GetService<IHistoryRepository>().CreateIfNotExistsAsync();
            var known = db.Database.GetMigrations().ToHashSet(StringComparer.Ordinal);
            if ((await db.Database.GetAppliedMigrationsAsync()).Where(m => !known.Contains(m)).ToList() is { Count: > 0 } unknown)
                throw new DatabaseNewerException(unknown);
            await db.Database.MigrateAsync();
            await CompromisedKeys.BackfillSpkiHashesAsync(db);
            if (db.Database.IsSqlite())
                await db.Database.ExecuteSqlRawAsync("PRAGMA journal_mode=WAL;");
            if (whileLocked is not null) await whileLocked(db, CancellationToken.None);
        }
    }

    public static void UseCertPortal(this WebApplication app)
    {
        app.UseForwardedHeaders();
        app.UseErrorPages();
        // Routing explicitly after the error handling: left implicit, WebApplication routes first, and the endpoints that
        // ShortCircuit() after routing (look-up, OCSP GET) then ran outside the exception handler, so a bug or a database
        // failure there reached the client as Kestrel's empty 500 instead of problem+json.
        app.UseRouting();
        app.UseMiddleware<RequestLimits>();
        app.UseSecurityHeaders();
        app.UseStaticFiles();
        // Only under /swagger, where they answer: Swagger's middleware takes its document generator (transient, with the
        // schema generator and their options) from the request's services for every request it sees, and a profile of
        // enrollments had that on every POST.
        app.UseWhen(c => c.Request.Path.StartsWithSegments("/swagger"), swagger =>
        {
            swagger.UseSwagger();
            swagger.UseSwaggerUI(c => c.DocumentTitle = "CertPortal API");
        });
        app.UseAuthentication();
        app.UseAuthorization();
        app.UsePrivatePageCaching();

        app.MapHealthChecks("/healthz", new Microsoft.AspNetCore.Diagnostics.HealthChecks.HealthCheckOptions { ResponseWriter = HealthReportText.WriteAsync });
        app.MapEnrollmentApi();
        app.MapCertificatesApi();
        app.MapOcspApi();
        app.MapBlockedKeysApi();
        app.MapRecipientLookupApi();
        app.MapAuditApi();
        app.MapAccountsApi();
        app.MapDirectoryPublicationApi();
        app.MapDirectoryEnrollmentApi();
        app.MapEscrowApi();
        app.MapMailApi();
        app.MapRenewalApi();
        app.MapCachesApi();
        app.MapRazorPages();
    }
}

/// <summary>Refuses a declared oversized body before anything reads it, as problem+json (Kestrel's own
/// limit still stops chunked bodies that grow past it); and a NUL character in the path, the query or a form field, which
/// no field of ours may hold and PostgreSQL cannot even compare (text never holds 0x00: every filter given one was a 500
/// there, and matched nothing on SQLite), or a form that cannot be read. JSON bodies are checked field by field where they are stored.</summary>
public sealed class RequestLimits(RequestDelegate next)
{
    public const long MaxBodyBytes = 256 * 1024;

    private static bool HasNul(string? s) => s is not null && s.Contains('\0');

    private static bool IsForm(string? contentType) => contentType is not null &&
        (contentType.StartsWith("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase) ||
         contentType.StartsWith("multipart/form-data", StringComparison.OrdinalIgnoreCase));

    public async Task InvokeAsync(HttpContext context)
    {
        var request = context.Request;
        if (request.ContentLength > MaxBodyBytes)
        {
            context.Response.StatusCode = StatusCodes.Status413PayloadTooLarge;
            await Results.Problem(statusCode: 413, title: "The request body is too large.",
                detail: $"Request bodies are limited to {MaxBodyBytes / 1024} KiB.").ExecuteAsync(context);
            return;
        }
        // Forms of any length encoding (a chunked one declares none); Kestrel's body limit bounds what is read. ASP.NET Core's form
        // reader itself throws for a NUL it decodes (InvalidDataException, a 500 from whichever page read the form). Told by the
        // header's text: HasFormContentType makes the request's form feature, which cost the JSON API's hot paths measurably.
        bool nulInForm;
        try
        {
            nulInForm = IsForm(request.ContentType) && (await request.ReadFormAsync(context.RequestAborted)).Any(f => f.Value.Any(HasNul));
        }
        // A form that cannot be read is refused like one holding a NUL: the multipart reader says "Unexpected end of Stream" (an
        // IOException) for a body without the parts its label promised. BadHttpRequestException (Kestrel's body limit, also an
        // IOException) keeps its own status.
        catch (Exception e) when (e is InvalidDataException or IOException and not BadHttpRequestException)
        {
            nulInForm = true;
        }
        if (nulInForm || HasNul(request.Path.Value) || (request.QueryString.HasValue && request.Query.Any(q => q.Value.Any(HasNul))))
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            await Results.Problem(statusCode: 400, title: "Invalid request.",
                detail: "The request holds a NUL character (U+0000), which no field accepts, or a form that cannot be read.").ExecuteAsync(context);
            return;
        }
        await next(context);
    }
}
