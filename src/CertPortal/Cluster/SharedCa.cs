using System.Security.Cryptography;
using System.Text;
using CertPortal.Authority;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Cluster;

/// <summary>One CA for every node: the root and issuing CA (certificate + encrypted key) live in the database,
/// not on a node's disk. Loaded once at start-up, under the start-up lock, so nodes starting together on an
/// empty database create exactly one CA. A node that still has the <c>DataDirectory/ca</c> files of a
/// single-node installation imports them into an empty database, and refuses to start when they are not
/// the database's CA (two CAs behind one distribution point would make every CRL fail for half the certificates).</summary>
public sealed class SharedCa(CaKeyStore store, CertPortalOptions options, TimeProvider time, ILogger<SharedCa> logger) : IDisposable
{
    private CaHierarchy? _hierarchy;
    private string? _passphrase;

    public CaHierarchy Hierarchy => _hierarchy ?? throw new InvalidOperationException("The CA is loaded at start-up (InitializeCertPortalAsync); it is not loaded yet.");

    /// <summary>CertPortal:Ca:KeyPassphrase, or on a single node the one generated into the data directory.</summary>
    public string Passphrase => _passphrase ?? throw new InvalidOperationException("The CA key passphrase is resolved at start-up; it is not yet.");

    private string PassphraseFile => Path.Combine(options.ResolvedDataDirectory, "ca-key-passphrase");

    public async Task LoadOrCreateAsync(CertPortalDbContext db, CaUrls urls, CancellationToken ct)
    {
        var stored = await db.SharedSecrets.AsNoTracking()
            .Where(s => s.Name == SharedSecretNames.RootCa || s.Name == SharedSecretNames.IssuingCa)
            .ToDictionaryAsync(s => s.Name, s => Encoding.UTF8.GetString(s.Value), ct);
        if (stored.Count == 1)
            throw new InvalidOperationException("The database holds only one of the root and issuing CA; restore the SharedSecrets table from backup.");

        if (stored.Count == 2)
        {
            if (string.IsNullOrEmpty(options.Ca.KeyPassphrase) && !File.Exists(PassphraseFile))
                throw new InvalidOperationException(
                    "The database already holds a CA, and this node has no CertPortal:Ca:KeyPassphrase (nor a ca-key-passphrase file " +
                    $"in {options.ResolvedDataDirectory}). Every node needs the passphrase of the node that created the CA.");
            _passphrase = ResolvePassphrase();
            var root = Open(CertificateAuthority.RootName, stored[SharedSecretNames.RootCa]);
            var issuing = Open(CertificateAuthority.IssuingName, stored[SharedSecretNames.IssuingCa]);
            RefuseDifferentLocalCa(root, issuing);
            _hierarchy = new CaHierarchy(root, issuing, urls);
            return;
        }

        _passphrase = ResolvePassphrase();
        var legacy = store.TryLoadLegacy(_passphrase);
        var (newRoot, newIssuing) = legacy ?? store.Create(urls);
        var now = time.GetUtcNow();
        foreach (var ca in new[] { newRoot, newIssuing })
            db.SharedSecrets.Add(new SharedSecret { Name = SharedSecretNames.Ca(ca.Name), Value = Encoding.UTF8.GetBytes(CaKeyStore.Export(ca, _passphrase)), CreatedAt = now });
        await db.SaveChangesAsync(ct);
        db.ChangeTracker.Clear();
        if (legacy is not null)
            logger.LogInformation("Imported the CA from {Directory} into the database: every node now uses it", store.LegacyDirectory);
        else
            logger.LogInformation("Created root CA {Root} ({RootAlgorithm}) and issuing CA {Issuing} ({IssuingAlgorithm})",
                newRoot.Certificate.Subject, options.Ca.RootKeyAlgorithm, newIssuing.Certificate.Subject, options.Ca.IssuingKeyAlgorithm);
        _hierarchy = new CaHierarchy(newRoot, newIssuing, urls);
    }

    private string ResolvePassphrase() => SecretFile.ReadOrCreate(options.Ca.KeyPassphrase, PassphraseFile, "CA key passphrase",
        CertPortalOptionsValidator.MinimumKeyPassphraseLength, logger);

    private CertificateAuthority Open(string name, string pem)
    {
        try
        {
            return CaKeyStore.Import(name, pem, Passphrase);
        }
        catch (CryptographicException e)
        {
            throw new InvalidOperationException(
                $"Cannot decrypt the {name} CA key stored in the database: this node's CertPortal:Ca:KeyPassphrase is not the one " +
                $"the CA was created with ({e.Message}). Every node needs the same passphrase.", e);
        }
    }

    private void RefuseDifferentLocalCa(CertificateAuthority root, CertificateAuthority issuing)
    {
        foreach (var ca in new[] { root, issuing })
        {
            using var local = store.LegacyCertificate(ca.Name);
            if (local is null || local.RawData.AsSpan().SequenceEqual(ca.Certificate.RawData)) continue;
            throw new InvalidOperationException(
                $"This node's {ca.Name} CA in {store.LegacyDirectory} ({local.Subject}, SHA-256 {local.GetCertHashString(HashAlgorithmName.SHA256)}) " +
                $"is not the {ca.Name} CA in the database ({ca.Certificate.Subject}, SHA-256 {ca.Certificate.GetCertHashString(HashAlgorithmName.SHA256)}). " +
                "One database serves one CA: remove that directory to use the database's CA, or give this node its own database.");
        }
    }

    public void Dispose() => _hierarchy?.Dispose();
}
