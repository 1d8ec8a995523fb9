using System.Security.Cryptography;
using System.Text;
using CertPortal.Cluster;

namespace CertPortal.Security;

/// <summary>How a console sign-in's name appears in the audit log, the application log and the throttle's count. An account's
/// name appears as itself. Text that names no account does not appear at all: people type their password into the name field,
/// which put passwords in plain text into both logs, and anyone could write whatever they liked into the audit log's actor
/// column. Such a name appears as <c>unknown-account:</c> and the first 64 bits of its HMAC-SHA256 under a key every node
/// derives alike from CertPortal:Ca:KeyPassphrase (<see cref="KeyEncryptionSecret.DeriveKey"/>): one name always gets one actor,
/// so the throttle counts and refuses it as it does an account's name (throttling accounts only would tell which names exist),
/// while nobody without the key can test guesses against it, as they could against a plain hash of a password.</summary>
public sealed class SignInNames(KeyEncryptionSecret kek)
{
    public const string UnknownAccountPrefix = "unknown-account:";

    private readonly Lazy<byte[]> _key = new(() => kek.DeriveKey("sign-in-names"));

    /// <summary>The actor for <paramref name="normalizedName"/> (<see cref="Accounts.NormalizeName"/>) when it names no account. Computed for every sign-in, account or
    /// not, so that the work does not depend on whether the name exists (the first call of a process derives the key).</summary>
    public string UnknownAccountActor(string normalizedName) =>
        UnknownAccountPrefix + Convert.ToHexStringLower(HMACSHA256.HashData(_key.Value, Encoding.UTF8.GetBytes(normalizedName)).AsSpan(0, 8));
}
