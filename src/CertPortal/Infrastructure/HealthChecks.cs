using System.Globalization;
using System.Text;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace CertPortal.Infrastructure;

public sealed class DatabaseHealthCheck(CertPortalDbContext db) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        await db.Database.CanConnectAsync(cancellationToken) ? HealthCheckResult.Healthy() : HealthCheckResult.Unhealthy("database unreachable");
}

/// <summary>Degraded, not unhealthy, when the issuing CA ends within <c>Issuance:ValidityDays</c> (new IDs come out shorter) or has
/// ended (enrollment answers 503): a monitor sees it, while a load balancer keeps the node, which still serves CRLs, OCSP and
/// look-ups (Degraded answers 200). There is no rollover yet (README, Deployment).</summary>
public sealed class IssuingCaHealthCheck(CertificateIssuer issuer, CertPortalOptions options, TimeProvider time) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        var end = issuer.IssuingNotAfter.UtcDateTime.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
        return Task.FromResult(issuer.HasEndedAt(now) ? HealthCheckResult.Degraded($"the issuing CA ends {end}: enrollment is refused")
            : issuer.IssuingNotAfter - now < TimeSpan.FromDays(options.Issuance.ValidityDays)
                ? HealthCheckResult.Degraded($"the issuing CA ends {end}: new certificates end with it")
                : HealthCheckResult.Healthy());
    }
}

/// <summary>/healthz's body: the status alone when healthy (what monitors and the tests read), otherwise the status and a line
/// for each check that is not healthy, saying why.</summary>
public static class HealthReportText
{
    public static Task WriteAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "text/plain; charset=utf-8";
        var text = new StringBuilder(report.Status.ToString());
        foreach (var (name, entry) in report.Entries.Where(e => e.Value.Status != HealthStatus.Healthy))
            text.Append('\n').Append(name).Append(": ").Append(entry.Description);
        return context.Response.WriteAsync(text.ToString());
    }
}
