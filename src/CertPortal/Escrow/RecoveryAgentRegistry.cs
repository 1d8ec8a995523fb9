using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Auditing;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Escrow;

/// <summary>Who may hold shares: recovery-agent accounts and the certificates their shares are encrypted
/// to. Registering or retiring an agent changes future escrows only.</summary>
public sealed class RecoveryAgentRegistry(CertPortalDbContext db, TimeProvider time)
{
    public async Task<Outcome<AgentView>> RegisterAsync(RegisterAgentRequest request, string actor, CancellationToken ct)
    {
        var account = await db.Accounts.AsNoTracking().FirstOrDefaultAsync(a => a.Id == request.AccountId && a.DisabledAt == null, ct);
        if (account is null || account.Role != Security.Roles.RecoveryAgent)
            return Failure.Unprocessable("Invalid accountId.", "accountId must name an enabled account with the recovery-agent role.");
        X509Certificate2 cert;
        try { cert = X509Certificate2.CreateFromPem(request.CertificatePem ?? ""); }
        catch (CryptographicException) { return Failure.Unprocessable("Invalid certificatePem.", "certificatePem must be one PEM X.509 certificate."); }
        using (cert)
        {
            var check = new AgentCertificateValidator(time).Validate(cert);
            if (!check.IsValid) return Failure.Unprocessable("Unsuitable agent certificate.", check.Error!);
            // The checks below and the insert decide together: two registrations at once (for one account, or of one key) would
            // otherwise both pass them, and one person could hold two shares of every later escrow. SQLite's write transaction
            // excludes every other writer; PostgreSQL takes a named lock.
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            await db.LockNamedAsync("recovery-agent-registration", ct);
            if (await db.RecoveryAgents.AnyAsync(a => a.AccountId == account.Id && a.RetiredAt == null, ct))
                return Failure.Conflict($"Account '{account.Name}' is already an active recovery agent; retire it first to change its certificate.");
            // One key, one agent: the same key registered for two accounts would let one person hold two shares. Compared as
            // imported, so that another encoding of the same key (RSA without its NULL parameters, a compressed EC point) is the same key.
            var publicKey = AgentCertificateValidator.CanonicalPublicKey(cert)!; // Validate read it
            foreach (var other in await db.RecoveryAgents.AsNoTracking().Where(a => a.RetiredAt == null).ToListAsync(ct))
            {
                using var otherCert = X509CertificateLoader.LoadCertificate(other.CertificateDer);
                if (AgentCertificateValidator.CanonicalPublicKey(otherCert) is { } otherKey && otherKey.AsSpan().SequenceEqual(publicKey))
                    return Failure.Conflict($"This public key is already registered for recovery agent '{other.Name}'; every agent needs its own key.");
            }
            var now = time.GetUtcNow();
            var agent = new RecoveryAgent
            {
                Id = Guid.CreateVersion7(now), AccountId = account.Id, Name = account.Name, CertificateDer = cert.RawData,
                CertificateSha256 = Convert.ToHexString(SHA256.HashData(cert.RawData)), RegisteredAt = now,
            };
            db.RecoveryAgents.Add(agent);
            AuditLog.Record(db, now, actor, AuditActions.AgentRegistered, $"recovery-agent:{agent.Id}", new { agent.Name, agent.CertificateSha256 });
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
            return View(agent);
        }
    }

    public async Task<IReadOnlyList<AgentView>> ListAsync(CancellationToken ct) =>
        (await db.RecoveryAgents.AsNoTracking().OrderBy(a => a.RegisteredAt).ToListAsync(ct)).Select(View).ToList();

    /// <summary>Retiring an agent re-wraps nothing: new escrows leave it out, existing escrows keep the
    /// agent set they were made with, and the retired agent can still approve those with its share (so
    /// retiring never makes a key unrecoverable). Re-escrow moves an escrow to the current set; disabling
    /// the account stops the agent altogether.</summary>
    public async Task<Outcome<AgentView>> RetireAsync(Guid id, string actor, CancellationToken ct)
    {
        var agent = await db.RecoveryAgents.FirstOrDefaultAsync(a => a.Id == id, ct);
        if (agent is null) return Failure.NotFound($"No recovery agent {id}.");
        if (agent.RetiredAt is null)
        {
            agent.RetiredAt = time.GetUtcNow();
            AuditLog.Record(db, agent.RetiredAt.Value, actor, AuditActions.AgentRetired, $"recovery-agent:{agent.Id}", new { agent.Name });
            await db.SaveChangesAsync(ct);
        }
        return View(agent);
    }

    private static AgentView View(RecoveryAgent a)
    {
        using var cert = X509CertificateLoader.LoadCertificate(a.CertificateDer);
        return new AgentView(a.Id, a.AccountId, a.Name, a.CertificateSha256, cert.Subject, new DateTimeOffset(cert.NotAfter.ToUniversalTime()),
            a.RegisteredAt, a.RetiredAt);
    }
}
