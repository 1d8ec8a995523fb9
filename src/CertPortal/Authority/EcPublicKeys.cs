using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Authority;

/// <summary>Reads a subscriber's EC public key to check its CSR's signature, with libcrypto's EC_KEY functions directly
/// rather than through .NET's key objects. A profile of the enrollment path (session 12) put the CSR's key read and
/// signature check at about 16 % of an EC-P256 enrollment's CPU, of which the elliptic-curve arithmetic was less than a
/// third: the rest was OpenSSL 3 building the curve's group again for every key (its Montgomery constants computed from
/// scratch, once when the key was decoded, once when it was copied into the key, once more when .NET's EVP verification
/// exported the key to OpenSSL's provider) and fetching the provider's implementations. Here a key of each curve is made
/// once and kept in a pool; a CSR's point is set into a pooled key (<c>o2i_ECPublicKey</c>, whose decoder checks the curve
/// equation) and the signature is checked by <c>ECDSA_verify</c>, the function OpenSSL's provider itself ends in (it
/// refuses any signature that is not the DER encoding of its values, as the provider path did). In a loop: 88 µs of CPU for
/// read and check before, 53 µs now (the check alone, <c>openssl speed ecdsap256</c>: 51 µs).
/// <para>.NET's import is not used for these keys either way: it runs <c>EC_KEY_check_key</c>, which also multiplies the
/// point by the group order, a check that proves nothing more on P-256/P-384 (cofactor 1: every point on the curve except
/// infinity has the group's prime order) after <see cref="WeakKeys.CheckEcPointEncoding"/> has refused compressed points and
/// infinity and the reader points off the curve. The keys are read by the very libcrypto .NET runs on (checked by version number); anywhere
/// else .NET's import is used.</para></summary>
internal static partial class EcPublicKeys
{
    private const string LibCrypto = "libcrypto.so.3";
    private const int NidP256 = 415; // NID_X9_62_prime256v1
    private const int NidP384 = 715; // NID_secp384r1

    /// <summary>Pooled keys per curve: at most as many as CSRs were checked at once, and never more than this.</summary>
    private const int MaxPooled = 64;

    /// <summary>Whether keys are read without the key check here (false: .NET's own import).</summary>
    public static bool ReadsWithoutKeyCheck { get; } = SameLibCryptoAsDotNet();

    private static readonly KeyPool P256 = new(NidP256);
    private static readonly KeyPool P384 = new(NidP384);

    /// <summary>The key, ready to check signatures (the caller's to dispose), or null when it cannot be read.</summary>
    public static EcVerificationKey? Read(PublicKey key, string curveOid)
    {
        var pool = curveOid switch { Oids.CurveP256 => P256, Oids.CurveP384 => P384, _ => null };
        if (ReadsWithoutKeyCheck && pool is not null)
        {
            var native = pool.Rent(key.EncodedKeyValue.RawData);
            if (native != 0) return new EcVerificationKey(pool, native);
        }
        return key.GetECDsaPublicKey() is { } ec ? new EcVerificationKey(ec) : null;
    }

    /// <summary>A subscriber's EC public key, read for one signature check: a pooled libcrypto EC_KEY holding its point, or
    /// (where libcrypto is not the one .NET runs on) .NET's key.</summary>
    public sealed class EcVerificationKey : IDisposable
    {
        private readonly KeyPool? _pool;
        private nint _native;
        private readonly ECDsa? _dotnet;

        internal EcVerificationKey(KeyPool pool, nint native) => (_pool, _native) = (pool, native);

        internal EcVerificationKey(ECDsa dotnet) => _dotnet = dotnet;

        /// <summary>Whether <paramref name="derSignature"/> (an ECDSA-Sig-Value, RFC 3279 §2.2.3) is this key's signature of
        /// <paramref name="data"/> hashed with <paramref name="hash"/>.</summary>
        public bool VerifyData(ReadOnlySpan<byte> data, ReadOnlySpan<byte> derSignature, HashAlgorithmName hash)
        {
            if (_dotnet is not null) return _dotnet.VerifyData(data, derSignature, hash, DSASignatureFormat.Rfc3279DerSequence);
            ObjectDisposedException.ThrowIf(_native == 0, this);
            Span<byte> digest = stackalloc byte[64];
            var length = CryptographicOperations.HashData(hash, data, digest);
            return Verify(digest[..length], derSignature, _native);
        }

        public void Dispose()
        {
            _dotnet?.Dispose();
            if (_native != 0) _pool!.Return(_native);
            _native = 0;
        }
    }

    internal sealed class KeyPool(int nid)
    {
        private readonly ConcurrentBag<nint> _keys = [];
        private int _count;

        /// <summary>A key of this curve holding <paramref name="point"/> (X9.62 octets), or 0 when libcrypto refuses the point.</summary>
        public unsafe nint Rent(byte[] point)
        {
            if (_keys.TryTake(out var key)) Interlocked.Decrement(ref _count);
            else if ((key = EcKeyNewByCurveName(nid)) == 0)
            {
                ErrClearError();
                return 0;
            }
            fixed (byte* start = point)
            {
                var next = (nint)start;
                var set = key;
                if (O2iEcPublicKey(ref set, ref next, point.Length) != 0 && next == (nint)(start + point.Length)) return key;
            }
            // A refused point: the key is freed rather than pooled half-set, and no error stays on this thread's OpenSSL
            // error queue for .NET's next call to find (.NET's import, tried next, then says what is wrong with the key).
            ErrClearError();
            EcKeyFree(key);
            return 0;
        }

        public void Return(nint key)
        {
            if (Interlocked.Increment(ref _count) <= MaxPooled)
            {
                _keys.Add(key);
                return;
            }
            Interlocked.Decrement(ref _count);
            EcKeyFree(key);
        }
    }

    private static unsafe bool Verify(ReadOnlySpan<byte> digest, ReadOnlySpan<byte> signature, nint key)
    {
        int verified;
        fixed (byte* d = digest)
        fixed (byte* s = signature)
            verified = EcdsaVerify(0, d, digest.Length, s, signature.Length, key);
        // 0: a wrong signature; -1: not DER or not readable. Neither may leave errors behind for the next OpenSSL call.
        if (verified != 1) ErrClearError();
        return verified == 1;
    }

    private static bool SameLibCryptoAsDotNet()
    {
        try
        {
            // Our libcrypto must be the one .NET loaded (the one the tests ran against), with the functions used here.
            return SafeEvpPKeyHandle.OpenSslVersion == (long)OpenSslVersionNum()
                && NativeLibrary.TryLoad(LibCrypto, out var library)
                && NativeLibrary.TryGetExport(library, "o2i_ECPublicKey", out _)
                && NativeLibrary.TryGetExport(library, "ECDSA_verify", out _);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport(LibCrypto, EntryPoint = "EC_KEY_new_by_curve_name")]
    private static partial nint EcKeyNewByCurveName(int nid);

    [LibraryImport(LibCrypto, EntryPoint = "o2i_ECPublicKey")]
    private static partial nint O2iEcPublicKey(ref nint key, ref nint input, long length);

    [LibraryImport(LibCrypto, EntryPoint = "ECDSA_verify")]
    private static unsafe partial int EcdsaVerify(int type, byte* digest, int digestLength, byte* signature, int signatureLength, nint key);

    [LibraryImport(LibCrypto, EntryPoint = "EC_KEY_free")]
    private static partial void EcKeyFree(nint key);

    [LibraryImport(LibCrypto, EntryPoint = "ERR_clear_error")]
    private static partial void ErrClearError();

    [LibraryImport(LibCrypto, EntryPoint = "OpenSSL_version_num")]
    private static partial nuint OpenSslVersionNum();
}
