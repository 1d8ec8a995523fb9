using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace CertPortal.Escrow;

/// <summary>
/// Hash commitment to one Shamir share, stored at escrow time so each share an agent submits
/// can be checked on its own (a bad share otherwise only shows up as a failed recombination,
/// without saying whose share was wrong).
/// </summary>
/// <remarks>
/// commitment = SHA-256(label || 0x00 || u32be(len(context)) || context || share).
/// The label gives domain separation from every other SHA-256 use in the system; the optional
/// context (e.g. the escrow record id) stops a commitment from one escrow matching a share of another.
/// It hides the share because a share's y bytes carry the full entropy of the random polynomial
/// (256 bits for a 32-byte data key), far beyond brute force.
/// </remarks>
public static class ShareCommitment
{
    public const int Size = 32;

    private static readonly byte[] DomainLabel = Encoding.ASCII.GetBytes("CertPortal/escrow/share-commitment/v1");

    public static byte[] Compute(ReadOnlySpan<byte> share, ReadOnlySpan<byte> context = default)
    {
        if (share.IsEmpty)
            throw new ArgumentException("The share must not be empty.", nameof(share));

        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(DomainLabel);
        Span<byte> header = stackalloc byte[5];
        header[0] = 0x00;
        BinaryPrimitives.WriteUInt32BigEndian(header[1..], (uint)context.Length);
        hash.AppendData(header);
        hash.AppendData(context);
        hash.AppendData(share);
        return hash.GetHashAndReset();
    }

    /// <summary>Checks a submitted share against its stored commitment in constant time.</summary>
    public static bool Verify(ReadOnlySpan<byte> share, ReadOnlySpan<byte> commitment, ReadOnlySpan<byte> context = default)
    {
        if (share.IsEmpty || commitment.Length != Size)
            return false;
        byte[] actual = Compute(share, context);
        return CryptographicOperations.FixedTimeEquals(actual, commitment);
    }
}
