using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Escrow;

/// <summary>Archives private keys so that no one — the server included — can open them without M agents:
/// the key is sealed under a fresh AES-256-GCM data key, which exists afterwards only as Shamir shares,
/// each encrypted to one agent's certificate.</summary>
public sealed class KeyArchive(CertPortalOptions options, AgentShareEncryption shareEncryption, TimeProvider time, ILogger<KeyArchive> logger)
{
    /// <summary>The policy row changed through the admin API, else configuration; <see cref="EscrowPolicyRecord.MinimumAgents"/> is always resolved.</summary>
    // Compiled once: every enrollment reads the policy.
    private static readonly CompiledQuery<Func<CertPortalDbContext, CancellationToken, Task<EscrowPolicyRecord?>>> CurrentPolicy = new(() =>
        EF.CompileAsyncQuery((CertPortalDbContext db, CancellationToken ct) => db.EscrowPolicy.AsNoTracking().OrderBy(p => p.Id).FirstOrDefault()));

    public async Task<EscrowPolicyRecord> PolicyAsync(CertPortalDbContext db, CancellationToken ct)
    {
        var policy = await CurrentPolicy.For(db)(db, ct) ?? new EscrowPolicyRecord
        {
            Threshold = options.Escrow.Threshold,
            EncryptionKeyGeneration = options.Escrow.EncryptionKeyGeneration,
            DualKeyGeneration = options.Escrow.DualKeyGeneration,
        };
        policy.MinimumAgents ??= Math.Max(options.Escrow.MinimumAgents, policy.Threshold);
        return policy;
    }

    /// <summary>How keys of <paramref name="profile"/> are to be made under the current policy (what <see cref="GenerationFor(EscrowPolicyRecord, CertificateProfileName)"/>
    /// says of <see cref="PolicyAsync"/>), from the key generation the policy row stores for the profile (null when there is no row or
    /// nothing stored: configuration applies), which every enrollment reads with its token (<see cref="Enrollment.EnrollmentTokens.FindWithKeyGenerationAsync"/>).</summary>
    public KeyGenerationPolicy GenerationFor(CertificateProfileName profile, KeyGenerationPolicy? stored) => profile switch
    {
        CertificateProfileName.Encryption => stored ?? options.Escrow.EncryptionKeyGeneration,
        CertificateProfileName.Dual => stored ?? options.Escrow.DualKeyGeneration,
        _ => KeyGenerationPolicy.Refused,
    };

    /// <summary>Null when the active agents satisfy the policy (at least N, hence at least M); else why not.</summary>
    public static Failure? CheckAgents(EscrowPolicyRecord policy, int activeAgents) =>
        activeAgents >= policy.MinimumAgents!.Value ? null
        : Failure.Conflict($"Key escrow needs at least {policy.MinimumAgents} active recovery agents (M = {policy.Threshold} of N >= {policy.MinimumAgents}); {activeAgents} are active.");

    public static KeyGenerationPolicy GenerationFor(EscrowPolicyRecord policy, CertificateProfileName profile) => profile switch
    {
        CertificateProfileName.Encryption => policy.EncryptionKeyGeneration,
        CertificateProfileName.Dual => policy.DualKeyGeneration,
        // Non-repudiation depends on only the person holding a signing key.
        _ => KeyGenerationPolicy.Refused,
    };

    /// <summary>Agents that count toward N: registered, not retired, and whose account is enabled and still a recovery agent.
    /// A disabled account can never sign in to approve, and an account moved to another role is no longer an agent
    /// (an administrator is never one): a share sealed to either is a share no one will submit, so counting them let an
    /// escrow be made that M agents can no longer open.</summary>
    public static IQueryable<RecoveryAgent> ActiveAgents(CertPortalDbContext db) =>
        db.RecoveryAgents.Where(a => a.RetiredAt == null &&
            db.Accounts.Any(account => account.Id == a.AccountId && account.DisabledAt == null && account.Role == Security.Roles.RecoveryAgent));

    /// <summary>Active agents (<see cref="ActiveAgents"/>) whose certificate can receive a share now. An agent whose certificate has
    /// expired is left out (and logged) rather than failing every escrow; N still has to be met.</summary>
    public async Task<List<RecoveryAgent>> UsableAgentsAsync(CertPortalDbContext db, CancellationToken ct)
    {
        var active = await ActiveAgents(db).AsNoTracking().OrderBy(a => a.RegisteredAt).ToListAsync(ct);
        var validator = new AgentCertificateValidator(time);
        return active.Where(agent =>
        {
            using var cert = X509CertificateLoader.LoadCertificate(agent.CertificateDer);
            var check = validator.Validate(cert);
            if (!check.IsValid)
                logger.LogWarning("Recovery agent {Agent} gets no share of new escrows: {Reason} Register a new certificate for it.", agent.Name, check.Error);
            return check.IsValid;
        }).ToList();
    }

    /// <summary>Adds the escrow (envelope + one encrypted share per agent) to the caller's transaction.</summary>
    public KeyEscrow Archive(CertPortalDbContext db, X509Certificate2 certificate, string serialHex, ReadOnlySpan<byte> pkcs8,
        IReadOnlyList<RecoveryAgent> agents, int threshold, DateTimeOffset now)
    {
        var escrow = Seal(certificate, serialHex, pkcs8, agents, threshold, now);
        db.KeyEscrows.Add(escrow);
        return escrow;
    }

    /// <summary>The escrow (envelope + one encrypted share per agent), not yet added to any transaction: the
    /// expensive part, done before the enrollment's write.</summary>
    public KeyEscrow Seal(X509Certificate2 certificate, string serialHex, ReadOnlySpan<byte> pkcs8,
        IReadOnlyList<RecoveryAgent> agents, int threshold, DateTimeOffset now)
    {
        using var sealedKey = KeyEnvelope.Seal(pkcs8, KeyEnvelopeBinding.ForCertificate(certificate));
        var escrow = new KeyEscrow
        {
            Id = Guid.CreateVersion7(now), SerialNumber = serialHex, Threshold = threshold, Envelope = sealedKey.Envelope, CreatedAt = now,
        };
        escrow.Shares.AddRange(SplitToAgents(escrow.Id, sealedKey.DataKey, agents, threshold));
        return escrow;
    }

    /// <summary>Splits a data key M-of-N and encrypts share i to agent i. Plain shares are wiped before returning.</summary>
    public List<EscrowShare> SplitToAgents(Guid escrowId, ReadOnlySpan<byte> dataKey, IReadOnlyList<RecoveryAgent> agents, int threshold)
    {
        var shares = ShamirSecretSharing.Split(dataKey, threshold, agents.Count);
        try
        {
            var result = new List<EscrowShare>(agents.Count);
            for (var i = 0; i < agents.Count; i++)
            {
                using var agentCert = X509CertificateLoader.LoadCertificate(agents[i].CertificateDer);
                result.Add(new EscrowShare
                {
                    Id = Guid.NewGuid(),
                    EscrowId = escrowId,
                    AgentId = agents[i].Id,
                    EncryptedShare = shareEncryption.EncryptShare(shares[i], agentCert),
                    Commitment = ShareCommitment.Compute(shares[i], escrowId.ToByteArray()),
                });
            }
            return result;
        }
        finally
        {
            foreach (var s in shares) CryptographicOperations.ZeroMemory(s);
        }
    }
}
