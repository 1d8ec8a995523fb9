using CertPortal.Auditing;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Escrow;

/// <summary>The escrow policy as administrators see and change it: M (threshold), N (minimum active
/// agents) and, per profile, whether the server may generate keys. Configuration applies until the
/// first change; <see cref="KeyArchive.PolicyAsync"/> reads the result.</summary>
public sealed class EscrowPolicyEditor(CertPortalDbContext db, KeyArchive archive, TimeProvider time)
{
    public async Task<EscrowPolicyView> GetAsync(CancellationToken ct)
    {
        var p = await archive.PolicyAsync(db, ct);
        return new EscrowPolicyView(p.Threshold, p.MinimumAgents!.Value, await KeyArchive.ActiveAgents(db).CountAsync(ct),
            p.EncryptionKeyGeneration.ToString(), p.DualKeyGeneration.ToString());
    }

    public async Task<Outcome<EscrowPolicyView>> UpdateAsync(PolicyUpdate update, string actor, CancellationToken ct)
    {
        // Changes are decided one after another: two at once both read "no row" and inserted it (a primary key violation,
        // 500), or each wrote back the other's fields as it had read them (a change lost). SQLite's write transaction
        // excludes other writers; PostgreSQL takes a named lock before the read.
        await using var tx = await db.Database.BeginTransactionAsync(ct);
        await db.LockNamedAsync("escrow-policy", ct);
        var current = await archive.PolicyAsync(db, ct);
        var threshold = update.Threshold ?? current.Threshold;
        if (threshold is < 2 or > 16)
            return Failure.Unprocessable("Invalid threshold.", "threshold (M) must be between 2 and 16: one agent alone must never recover a key.");
        var minimumAgents = update.MinimumAgents ?? Math.Max(current.MinimumAgents!.Value, threshold);
        if (minimumAgents < threshold || minimumAgents > ShamirSecretSharing.MaxShares)
            return Failure.Unprocessable("Invalid minimumAgents.", $"minimumAgents (N) must be at least threshold (M = {threshold}) and at most {ShamirSecretSharing.MaxShares}.");
        if (!TryPolicy(update.EncryptionKeyGeneration, current.EncryptionKeyGeneration, out var enc) || !TryPolicy(update.DualKeyGeneration, current.DualKeyGeneration, out var dual))
            return Failure.Unprocessable("Invalid key generation policy.", "encryptionKeyGeneration and dualKeyGeneration must be Refused, Allowed or Required.");
        var now = time.GetUtcNow();
        var row = await db.EscrowPolicy.OrderBy(p => p.Id).FirstOrDefaultAsync(ct);
        if (row is null) db.EscrowPolicy.Add(row = new EscrowPolicyRecord());
        row.Threshold = threshold; row.MinimumAgents = minimumAgents; row.EncryptionKeyGeneration = enc; row.DualKeyGeneration = dual; row.UpdatedAt = now; row.UpdatedBy = actor;
        AuditLog.Record(db, now, actor, AuditActions.EscrowPolicyChanged, "escrow-policy", new { threshold, minimumAgents, enc, dual });
        await db.SaveChangesAsync(ct);
        await tx.CommitAsync(ct);
        return await GetAsync(ct);
    }

    private static bool TryPolicy(string? value, KeyGenerationPolicy current, out KeyGenerationPolicy policy)
    {
        policy = current;
        return value is null || (Enum.TryParse(value, ignoreCase: true, out policy) && Enum.IsDefined(policy));
    }
}
