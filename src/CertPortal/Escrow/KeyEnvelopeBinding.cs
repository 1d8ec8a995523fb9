using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace CertPortal.Escrow;

/// <summary>
/// The certificate an escrowed private key belongs to. Used as AES-GCM associated data
/// (NIST SP 800-38D §5.2.1.1) so an envelope cannot be swapped onto another certificate's record.
/// </summary>
public sealed class KeyEnvelopeBinding
{
    private static readonly byte[] DomainLabel = Encoding.ASCII.GetBytes("CertPortal/escrow/key-envelope");

    private readonly byte[] _serialNumber;
    private readonly byte[] _certificateSha256;

    /// <param name="serialNumber">Certificate serial number, big-endian as encoded in the certificate (RFC 5280 §4.1.2.2).</param>
    /// <param name="certificateSha256">SHA-256 of the DER certificate.</param>
    public KeyEnvelopeBinding(ReadOnlySpan<byte> serialNumber, ReadOnlySpan<byte> certificateSha256)
    {
        // RFC 5280 §4.1.2.2 caps serials at 20 octets; allow some slack for non-conforming CAs.
        if (serialNumber.IsEmpty || serialNumber.Length > 64)
            throw new ArgumentException("The serial number must be 1..64 bytes.", nameof(serialNumber));
        if (certificateSha256.Length != SHA256.HashSizeInBytes)
            throw new ArgumentException("The certificate hash must be a 32-byte SHA-256 value.", nameof(certificateSha256));
        _serialNumber = serialNumber.ToArray();
        _certificateSha256 = certificateSha256.ToArray();
    }

    public ReadOnlySpan<byte> SerialNumber => _serialNumber;

    public ReadOnlySpan<byte> CertificateSha256 => _certificateSha256;

    public static KeyEnvelopeBinding ForCertificate(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return new KeyEnvelopeBinding(certificate.SerialNumberBytes.Span, SHA256.HashData(certificate.RawDataMemory.Span));
    }

    /// <summary>label || 0x00 || format version || u16 serial length || serial || SHA-256(cert).</summary>
    internal byte[] ToAssociatedData(byte formatVersion)
    {
        var aad = new byte[DomainLabel.Length + 1 + 1 + 2 + _serialNumber.Length + _certificateSha256.Length];
        var span = aad.AsSpan();
        DomainLabel.CopyTo(span);
        span = span[(DomainLabel.Length + 1)..];
        span[0] = formatVersion;
        BinaryPrimitives.WriteUInt16BigEndian(span[1..], (ushort)_serialNumber.Length);
        _serialNumber.CopyTo(span[3..]);
        _certificateSha256.CopyTo(span[(3 + _serialNumber.Length)..]);
        return aad;
    }
}
