using System.Security.Cryptography;

namespace CertPortal.Ocsp;

/// <summary>Which certificates were asked about before, recently: the responder keeps a signed response only from a
/// certificate's second request on, so certificates asked about once (most of them: a new mailbox's first check, a
/// message read once) do not fill the cache and push out the hot ones (senders of signed mail, asked again and again).
/// <para>A fixed table of 64-bit fingerprints, one per slot, the slot chosen by the fingerprint (TinyLFU's doorkeeper,
/// direct-mapped): a slot holding the same fingerprint means seen before; otherwise the fingerprint replaces it. Its
/// memory is 512 KiB whatever the traffic, and "recently" means within about <see cref="Slots"/> other first requests
/// (a mark survives n of them with probability (1 - 1/65,536)^n: 74 % after 20,000). A collision or a lost race costs
/// one more signature or keeps one response early, never a wrong answer.</para></summary>
internal sealed class OcspDoorkeeper
{
    public const int Slots = 1 << 16;

    private readonly long[] _fingerprints = new long[Slots];
    // Random per process, so made-up requests cannot be chosen to land on a given certificate's slot.
    private readonly ulong _seed = BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8));

    /// <summary>True when this certificate was asked about before (and its mark not overwritten since); marks it either way.</summary>
    public bool SeenBefore(string authority, string hashAlgorithm, string serial)
    {
        var fingerprint = Fingerprint(authority, hashAlgorithm, serial);
        return Interlocked.Exchange(ref _fingerprints[(int)((ulong)fingerprint >> 48)], fingerprint) == fingerprint;
    }

    private long Fingerprint(string authority, string hashAlgorithm, string serial)
    {
        // FNV-1a over the characters from a random start, then splitmix64's finaliser so every bit of the slot index
        // depends on every character; no allocation.
        var h = _seed ^ (uint)authority.GetHashCode() ^ ((ulong)(uint)hashAlgorithm.GetHashCode() << 32);
        foreach (var c in serial) h = (h ^ c) * 0x100000001B3UL;
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9UL;
        h = (h ^ (h >> 27)) * 0x94D049BB133111EBUL;
        h ^= h >> 31;
        // 0 marks an empty slot.
        return h == 0 ? 1 : (long)h;
    }
}
