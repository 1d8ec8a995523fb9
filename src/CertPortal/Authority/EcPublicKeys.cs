using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Authority;

/// <summary>Reads a subscriber's EC public key (to verify its CSR's signature) without OpenSSL's full key check. .NET
/// imports an EC public key with <c>EC_KEY_set_public_key_affine_coordinates</c>, which runs <c>EC_KEY_check_key</c>: besides
/// checking that the point is on the curve, that multiplies it by the group order, one scalar multiplication per key
/// (about 0.1 ms of CPU for P-256 on our machine, more than verifying the CSR's signature). For P-256 and P-384 the
/// cofactor is 1, so every point on the curve except infinity has the group's prime order: the multiplication proves
/// nothing more. <see cref="WeakKeys.CheckEcPoint"/> has already refused points that are compressed, infinity or off the
/// curve, and OpenSSL's decoder (<c>d2i_EC_PUBKEY</c>, through <c>EC_POINT_oct2point</c>) checks the curve equation again.
/// The key is decoded by the very libcrypto .NET runs on (checked by version number); anywhere else .NET's import is used.</summary>
internal static partial class EcPublicKeys
{
    private const string LibCrypto = "libcrypto.so.3";

    /// <summary>Whether keys are read without the key check here (false: .NET's own import).</summary>
    public static bool ReadsWithoutKeyCheck { get; } = SameLibCryptoAsDotNet();

    /// <summary>The key as an <see cref="ECDsa"/> (the caller's to dispose), or null when it cannot be read.</summary>
    public static ECDsa? Read(PublicKey key)
    {
        if (ReadsWithoutKeyCheck && Decode(key.ExportSubjectPublicKeyInfo()) is { } decoded) return decoded;
        return key.GetECDsaPublicKey();
    }

    private static unsafe ECDsa? Decode(byte[] subjectPublicKeyInfo)
    {
        nint ecKey;
        fixed (byte* start = subjectPublicKeyInfo)
        {
            var next = (nint)start;
            ecKey = D2iEcPubkey(0, ref next, subjectPublicKeyInfo.Length);
        }
        if (ecKey == 0)
        {
            // Leave no error on this thread's OpenSSL error queue for .NET's next call to find; .NET's import then says
            // what is wrong with the key.
            ErrClearError();
            return null;
        }
        try
        {
            return new ECDsaOpenSsl(ecKey); // takes its own reference
        }
        finally
        {
            EcKeyFree(ecKey);
        }
    }

    private static bool SameLibCryptoAsDotNet()
    {
        try
        {
            // Two different libcryptos in one process must never exchange keys: ours must be the one .NET loaded.
            return SafeEvpPKeyHandle.OpenSslVersion == (long)OpenSslVersionNum();
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport(LibCrypto, EntryPoint = "d2i_EC_PUBKEY")]
    private static partial nint D2iEcPubkey(nint key, ref nint input, long length);

    [LibraryImport(LibCrypto, EntryPoint = "EC_KEY_free")]
    private static partial void EcKeyFree(nint key);

    [LibraryImport(LibCrypto, EntryPoint = "ERR_clear_error")]
    private static partial void ErrClearError();

    [LibraryImport(LibCrypto, EntryPoint = "OpenSSL_version_num")]
    private static partial nuint OpenSslVersionNum();
}
