using System.Security.Cryptography;

namespace CertPortal.Escrow;

/// <summary>
/// An escrowed key envelope failed authentication: wrong data key, wrong certificate binding
/// (associated data) or a modified/truncated blob. Deliberately one type with no detail about
/// which check failed, so callers cannot become a decryption oracle.
/// </summary>
public sealed class EscrowIntegrityException : CryptographicException
{
    public EscrowIntegrityException(string message) : base(message) { }

    public EscrowIntegrityException(string message, Exception inner) : base(message, inner) { }
}
