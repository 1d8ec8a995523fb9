using System.Numerics;

namespace CertPortal.Authority;

/// <summary>Public keys the S/MIME BR (6.1.1.3) say a CA must reject because they are known to be
/// weak, checked on the public key alone. Each method returns null for a sound key, else why not.</summary>
public static class WeakKeys
{
    /// <summary>Trial division bound: gcd with the product of all primes below it costs one big
    /// division, so it can be far above the BR's "small factors" without slowing enrollment.</summary>
    public const int SmallPrimeBound = 100_000;

    /// <summary>S/MIME BR 6.1.1.3: the CA rejects moduli Fermat's method factors within 100 rounds.</summary>
    public const int FermatRounds = 100;

    private static readonly BigInteger F4 = 65537;
    private static readonly Lazy<BigInteger> SmallPrimeProduct = new(() => Product(PrimesBelow(SmallPrimeBound)));

    // ROCA (CVE-2017-15361): Infineon's RSALib made primes p = k·M + (65537^a mod M), M a primorial, so
    // every modulus is, modulo each small prime r, a power of 65537. The published fingerprint
    // (Nemec et al., CCS 2017) tests these primes; a random modulus passes all of them with
    // negligible probability.
    private static readonly int[] RocaPrimes =
        [3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167];
    private static readonly HashSet<int>[] RocaResidues = RocaPrimes.Select(PowersOf65537).ToArray();

    public static string? CheckRsa(BigInteger modulus, BigInteger exponent)
    {
        // S/MIME BR 6.1.6 allow odd exponents from 3 up; every client and library uses 65537, and small
        // exponents are what the textbook attacks on unpadded RSA need: we accept exactly 65537.
        if (exponent != F4) return $"The RSA public exponent must be 65537; this key has {exponent}.";
        if (modulus.IsEven || BigInteger.GreatestCommonDivisor(modulus, SmallPrimeProduct.Value) != BigInteger.One)
            return $"The RSA modulus has a prime factor below {SmallPrimeBound:N0} (a broken key generator): generate a new key.";
        if (IsRocaFingerprint(modulus))
            return "The RSA key was made by a generator with the ROCA weakness (CVE-2017-15361, Infineon RSALib): its private key can be computed. Update the token or smart card firmware and generate a new key.";
        if (FermatFactor(modulus, FermatRounds) is not null)
            return "The RSA key's two primes are so close that the modulus factors at once (Fermat's method): generate a new key.";
        return null;
    }

    public static bool IsRocaFingerprint(BigInteger modulus)
    {
        for (var i = 0; i < RocaPrimes.Length; i++)
            if (!RocaResidues[i].Contains((int)(modulus % RocaPrimes[i])))
                return false;
        return true;
    }

    /// <summary>Fermat's method: a = ⌈√n⌉, a+1, …; n = a² − b² = (a−b)(a+b) when a² − n is a square.</summary>
    public static BigInteger? FermatFactor(BigInteger n, int rounds)
    {
        var a = IntegerSquareRoot(n);
        if (a * a < n) a += 1;
        for (var i = 0; i < rounds; i++, a += 1)
        {
            var b2 = a * a - n;
            var b = IntegerSquareRoot(b2);
            if (b * b == b2) return a - b;
        }
        return null;
    }

    /// <summary>An EC public key must be a point on its curve (SEC 1 §3.2.2.1); an off-curve point lets an
    /// attacker extract an ECDH private key from whoever agrees keys with it (invalid-curve attacks).
    /// P-256 and P-384 have cofactor 1, so on the curve means in the right group.</summary>
    public static string? CheckEcPoint(string curveOid, ReadOnlySpan<byte> encodedPoint)
    {
        if (CheckEcPointEncoding(curveOid, encodedPoint) is { } encoding) return encoding;
        var curve = CurveOf(curveOid)!;
        var size = curve.FieldBytes;
        var x = new BigInteger(encodedPoint.Slice(1, size), isUnsigned: true, isBigEndian: true);
        var y = new BigInteger(encodedPoint.Slice(1 + size, size), isUnsigned: true, isBigEndian: true);
        var p = curve.P;
        if (x >= p || y >= p) return "The EC public key's coordinates are out of range: it is not a point on the curve.";
        var left = y * y % p;
        var right = (BigInteger.ModPow(x, 3, p) + curve.A * x + curve.B) % p;
        if (right.Sign < 0) right += p;
        return left == right ? null : "The EC public key is not a point on its curve.";
    }

    /// <summary>The part of <see cref="CheckEcPoint"/> that needs no arithmetic: a supported curve, an uncompressed point (not the
    /// point at infinity, whose encoding is one zero byte), and the curve's length. A reader that checks the coordinates' range and
    /// the curve equation itself (libcrypto's, see <see cref="SubscriberKey"/>) still takes compressed points: this refuses them.</summary>
    public static string? CheckEcPointEncoding(string curveOid, ReadOnlySpan<byte> encodedPoint)
    {
        if (CurveOf(curveOid) is not { } curve) return "Only the elliptic curves P-256 and P-384 are supported.";
        var size = curve.FieldBytes;
        if (encodedPoint.Length == 0 || encodedPoint[0] != 0x04)
            return "The EC public key must be an uncompressed point (RFC 5480 §2.2).";
        if (encodedPoint.Length != 1 + 2 * size)
            return $"The EC public key has {encodedPoint.Length} bytes; an uncompressed point on this curve has {1 + 2 * size}.";
        return null;
    }

    private static Curve? CurveOf(string curveOid) => curveOid switch
    {
        Oids.CurveP256 => P256,
        Oids.CurveP384 => P384,
        _ => null,
    };

    private sealed record Curve(int FieldBytes, BigInteger P, BigInteger A, BigInteger B);

    // Domain parameters from SEC 2 / FIPS 186-4 (a = p - 3 for both).
    private static readonly Curve P256 = MakeCurve(32,
        "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
        "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b");

    private static readonly Curve P384 = MakeCurve(48,
        "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff",
        "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef");

    private static Curve MakeCurve(int bytes, string pHex, string bHex)
    {
        var p = new BigInteger(Convert.FromHexString(pHex), isUnsigned: true, isBigEndian: true);
        return new Curve(bytes, p, p - 3, new BigInteger(Convert.FromHexString(bHex), isUnsigned: true, isBigEndian: true));
    }

    private static BigInteger IntegerSquareRoot(BigInteger n)
    {
        if (n.Sign <= 0) return BigInteger.Zero;
        // Newton's iteration from a power of two above √n decreases monotonically to ⌊√n⌋.
        var x = BigInteger.One << (int)((n.GetBitLength() + 1) / 2);
        while (true)
        {
            var y = (x + n / x) >> 1;
            if (y >= x) return x;
            x = y;
        }
    }

    private static HashSet<int> PowersOf65537(int prime)
    {
        var set = new HashSet<int>();
        var g = 65537 % prime;
        for (var v = 1; set.Add(v); v = v * g % prime) { }
        return set;
    }

    private static List<int> PrimesBelow(int bound)
    {
        var composite = new bool[bound];
        var primes = new List<int>();
        for (var i = 2; i < bound; i++)
        {
            if (composite[i]) continue;
            primes.Add(i);
            for (long j = (long)i * i; j < bound; j += i) composite[j] = true;
        }
        return primes;
    }

    /// <summary>Product by halves, so the multiplications stay balanced (linear-size products are slow).</summary>
    private static BigInteger Product(List<int> values)
    {
        var layer = values.Select(v => new BigInteger(v)).ToList();
        while (layer.Count > 1)
        {
            var next = new List<BigInteger>((layer.Count + 1) / 2);
            for (var i = 0; i < layer.Count; i += 2)
                next.Add(i + 1 < layer.Count ? layer[i] * layer[i + 1] : layer[i]);
            layer = next;
        }
        return layer[0];
    }
}
