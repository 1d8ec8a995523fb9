using System.Formats.Asn1;
using System.Numerics;
using System.Security.Cryptography;
using System.Text;

namespace CertPortal.Escrow;

/// <summary>
/// gpgsm 2.2's own PKCS#12 reader (minip12.c, string_to_key) gets RFC 7292 Appendix B.2 step 6 wrong:
/// after <c>I_j = (I_j + B + 1) mod 2^512</c> it prints the number back with gcry_mpi_print, which
/// drops leading zero bytes, so whenever a 64-byte block of I starts with 0x00 the rest of the key
/// is derived from a shifted buffer. Only keys longer than one SHA-1 output take that step, that is
/// 3DES (24 bytes), so about one compatibility file in 128 would not open in gpgsm ("decryption
/// failed; trying charset ..."). The outcome depends only on the random salt, the iteration count and
/// the password, so <see cref="Pkcs12Files"/> checks every salt of a compatibility file and builds it
/// again with fresh salts when one of them would hit the bug. gpgsm also fills I from at most 31
/// password characters, so longer passwords never work with it (README says so).
/// </summary>
public static class GpgsmPkcs12Quirk
{
    private const string PbeSha1TripleDes = "1.2.840.113549.1.12.1.3";
    private const string Pkcs7Data = "1.2.840.113549.1.7.1";
    private const string Pkcs7EncryptedData = "1.2.840.113549.1.7.6";
    private const string ShroudedKeyBag = "1.2.840.113549.1.12.10.1.2";

    /// <summary>True when gpgsm 2.2 would derive a different 3DES key than RFC 7292 for some PBE in the file.</summary>
    public static bool Affects(byte[] pfx, string password) =>
        TripleDesPbeParameters(pfx).Any(p => Affects(p.Salt, p.Iterations, password));

    /// <summary>Whether step 6 of the key derivation (diversifier 1) leaves a 64-byte block of I with a leading zero byte.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Security", "CA5350:Do Not Use Weak Cryptographic Algorithms",
        Justification = "Recomputes the SHA-1 PKCS#12 key derivation of the 3DES compatibility format, which that format requires; nothing is protected by it here.")]
    public static bool Affects(ReadOnlySpan<byte> salt, int iterations, string password)
    {
        const int v = 64;
        // I = S || P, each filled to 64 bytes by repetition; P is the BMPString password with its two-byte terminator.
        var bmp = Encoding.BigEndianUnicode.GetBytes(password + "\0");
        var i = new byte[2 * v];
        for (var k = 0; k < v; k++) i[k] = salt[k % salt.Length];
        for (var k = 0; k < v; k++) i[v + k] = bmp[k % bmp.Length];
        var d = new byte[v];
        d.AsSpan().Fill(1);
        var a = SHA1.HashData([.. d, .. i]);
        for (var n = 1; n < iterations; n++) a = SHA1.HashData(a);
        var b = new byte[v];
        for (var k = 0; k < v; k++) b[k] = a[k % a.Length];
        var bPlusOne = new BigInteger(b, isUnsigned: true, isBigEndian: true) + BigInteger.One;
        var modulus = BigInteger.One << (8 * v);
        for (var block = 0; block < i.Length; block += v)
        {
            var ij = (new BigInteger(i.AsSpan(block, v), isUnsigned: true, isBigEndian: true) + bPlusOne) % modulus;
            if (ij < BigInteger.One << (8 * (v - 1))) return true;
        }
        return false;
    }

    /// <summary>The (salt, iterations) of every pbeWithSHAAnd3-KeyTripleDES-CBC in the file: the encrypted
    /// certificate bag and each shrouded key bag.</summary>
    public static IEnumerable<(byte[] Salt, int Iterations)> TripleDesPbeParameters(byte[] pfx)
    {
        var found = new List<(byte[], int)>();
        var outer = new AsnReader(pfx, AsnEncodingRules.BER).ReadSequence();
        outer.ReadInteger();
        var authSafe = ReadContentInfo(outer.ReadSequence(), out var type);
        if (type != Pkcs7Data) return found;
        var contents = new AsnReader(authSafe, AsnEncodingRules.BER).ReadSequence();
        while (contents.HasData)
        {
            var content = ReadContentInfo(contents.ReadSequence(), out var contentType);
            if (contentType == Pkcs7EncryptedData)
            {
                var encryptedData = new AsnReader(content, AsnEncodingRules.BER).ReadSequence();
                encryptedData.ReadInteger();
                var info = encryptedData.ReadSequence();
                info.ReadObjectIdentifier();
                AddIfTripleDes(info.ReadSequence(), found);
            }
            else if (contentType == Pkcs7Data)
            {
                var bags = new AsnReader(content, AsnEncodingRules.BER).ReadSequence();
                while (bags.HasData)
                {
                    var bag = bags.ReadSequence();
                    if (bag.ReadObjectIdentifier() != ShroudedKeyBag) continue;
                    var encryptedKey = bag.ReadSequence(new Asn1Tag(TagClass.ContextSpecific, 0)).ReadSequence();
                    AddIfTripleDes(encryptedKey.ReadSequence(), found);
                }
            }
        }
        return found;
    }

    private static byte[] ReadContentInfo(AsnReader contentInfo, out string type)
    {
        type = contentInfo.ReadObjectIdentifier();
        var explicitContent = contentInfo.ReadSequence(new Asn1Tag(TagClass.ContextSpecific, 0));
        return type == Pkcs7Data ? explicitContent.ReadOctetString() : explicitContent.ReadEncodedValue().ToArray();
    }

    private static void AddIfTripleDes(AsnReader algorithm, List<(byte[], int)> found)
    {
        if (algorithm.ReadObjectIdentifier() != PbeSha1TripleDes) return;
        var parameters = algorithm.ReadSequence();
        var salt = parameters.ReadOctetString();
        found.Add((salt, (int)parameters.ReadInteger()));
    }
}
