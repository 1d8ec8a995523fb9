using System.Numerics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Authority;

public enum SubscriberKeyType { Rsa, Ec }

/// <summary>A subscriber public key that passed the key policy: RSA 2048-4096 (S/MIME BR: >= 2048,
/// modulus a multiple of 8) or ECDSA P-256/P-384, and none of the weaknesses of <see cref="WeakKeys"/>.
/// <see cref="SpkiSha256"/> is the SHA-256 of the DER SubjectPublicKeyInfo (upper-case hex, <see cref="SpkiHash(PublicKey)"/>):
/// how a key is blocked and found. It is computed once, when the key is accepted: an enrollment asks for it three times (the key's
/// lock, the token spend with the blocked-key check, the certificate's record), and for an RSA key each computation read the key
/// into OpenSSL again.</summary>
public sealed record SubscriberKey(SubscriberKeyType Type, string Algorithm, PublicKey PublicKey, string SpkiSha256)
{
    public const int MinRsaBits = 2048;
    public const int MaxRsaBits = 4096;

    /// <summary>Hashes the key as .NET re-encodes it, so one RSA key hashes alike whether its parameters were
    /// written NULL or left out. EC keys are hashed as given: issuance accepts only uncompressed named-curve
    /// points, and reported keys are re-encoded that way before hashing.</summary>
    public static string SpkiHash(PublicKey key)
    {
        if (key.Oid.Value == Oids.RsaEncryption && key.GetRSAPublicKey() is { } rsa)
            using (rsa) return SpkiHash(rsa.ExportSubjectPublicKeyInfo());
        return SpkiHash(key.ExportSubjectPublicKeyInfo());
    }

    public static string SpkiHash(byte[] subjectPublicKeyInfo) => Convert.ToHexString(SHA256.HashData(subjectPublicKeyInfo));

    public static bool TryAccept(PublicKey key, out SubscriberKey accepted, out string error)
    {
        var ok = TryAccept(key, out accepted, out error, out var read);
        read?.Dispose();
        return ok;
    }

    /// <summary>As <see cref="TryAccept(PublicKey, out SubscriberKey, out string)"/>, handing the caller the key as read
    /// (an <see cref="RSA"/> or an <see cref="EcPublicKeys.EcVerificationKey"/>, the caller's to dispose; null when refused),
    /// so a CSR's signature is verified without reading the key a second time: with OpenSSL 3 each read of a P-256 key
    /// costs about 0.1 ms of CPU, as much as the signature check itself.</summary>
    internal static bool TryAccept(PublicKey key, out SubscriberKey accepted, out string error, out IDisposable? read)
    {
        accepted = null!;
        error = "";
        read = null;
        switch (key.Oid.Value)
        {
            case Oids.RsaEncryption:
            {
                var rsa = key.GetRSAPublicKey();
                if (rsa is null) { error = "The RSA public key could not be read."; return false; }
                var p = rsa.ExportParameters(false);
                var bits = rsa.KeySize;
                var weakness =
                    bits < MinRsaBits ? $"RSA keys must be at least {MinRsaBits} bits; this one has {bits}."
                    : bits > MaxRsaBits ? $"RSA keys larger than {MaxRsaBits} bits are not supported; this one has {bits}."
                    : bits % 8 != 0 ? $"RSA modulus size must be a multiple of 8 bits; this one has {bits}."
                    : WeakKeys.CheckRsa(new BigInteger(p.Modulus, isUnsigned: true, isBigEndian: true),
                        new BigInteger(p.Exponent, isUnsigned: true, isBigEndian: true));
                if (weakness is not null) { error = weakness; rsa.Dispose(); return false; }
                accepted = new SubscriberKey(SubscriberKeyType.Rsa, $"RSA-{bits}", key, SpkiHash(rsa.ExportSubjectPublicKeyInfo()));
                read = rsa;
                return true;
            }
            case Oids.EcPublicKey:
            {
                var curve = CurveOid(key);
                var name = curve switch { Oids.CurveP256 => "EC-P256", Oids.CurveP384 => "EC-P384", _ => null };
                if (name is null) { error = $"Only the elliptic curves P-256 and P-384 are supported (got {curve ?? "unknown"})."; return false; }
                // A compressed point, or one of the wrong length, is refused before the key is read (libcrypto's reader takes
                // compressed points). The coordinates' range and the curve equation are checked by the reader (o2i_ECPublicKey,
                // or .NET's import); the same check in managed code (BigInteger, ~4 µs per CSR) runs only for a point the reader
                // refused, so that an off-curve point is refused by name, not as "could not be read".
                var point = key.EncodedKeyValue.RawData;
                var encoding = WeakKeys.CheckEcPointEncoding(curve!, point);
                if (encoding is not null) { error = encoding; return false; }
                EcPublicKeys.EcVerificationKey? ec;
                try
                {
                    ec = EcPublicKeys.Read(key, curve!);
                }
                catch (CryptographicException)
                {
                    // .NET's import (where the reader falls back to it) throws for what libcrypto's reader refuses.
                    ec = null;
                }
                if (ec is null) { error = WeakKeys.CheckEcPoint(curve!, point) ?? "The EC public key could not be read."; return false; }
                accepted = new SubscriberKey(SubscriberKeyType.Ec, name, key, SpkiHash(key.ExportSubjectPublicKeyInfo()));
                read = ec;
                return true;
            }
            default:
                error = $"Unsupported key algorithm {key.Oid.FriendlyName ?? key.Oid.Value}: use RSA (2048-4096 bits) or ECDSA P-256/P-384.";
                return false;
        }
    }

    private static string? CurveOid(PublicKey key)
    {
        try
        {
            // The EC parameters are a namedCurve OID (RFC 5480 §2.1.1); explicit curves are refused.
            var reader = new System.Formats.Asn1.AsnReader(key.EncodedParameters?.RawData ?? [], System.Formats.Asn1.AsnEncodingRules.DER);
            return reader.ReadObjectIdentifier();
        }
        catch (System.Formats.Asn1.AsnContentException)
        {
            return null;
        }
    }
}
