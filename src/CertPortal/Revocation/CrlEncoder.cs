using System.Formats.Asn1;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;

namespace CertPortal.Revocation;

/// <summary>One revoked certificate: serial (big-endian INTEGER content bytes), time, reason (null: omitted).</summary>
public readonly record struct CrlEntry(byte[] SerialNumber, DateTimeOffset RevokedAt, X509RevocationReason? Reason);

/// <summary>The revokedCertificates of a CRL being built, as DER in one buffer: adding an entry allocates nothing (a
/// million entries are 46 MB; an object each would be more than the CRL). Sized from the expected count, the buffer
/// is not copied as it fills.</summary>
public sealed class CrlEntries
{
    /// <summary>What an entry takes with a 16-byte serial and a reasonCode (SerialNumber.New), for sizing.</summary>
    internal const int TypicalEntryBytes = 49;

    private byte[] _buffer;
    private int _length;
    // The last revocation time written, whole seconds, and its encoding: mass revocations share their seconds.
    private long _timeSecond = long.MinValue;
    private readonly byte[] _time = new byte[17];
    private int _timeLength;

    public CrlEntries(int capacity = 4096) => _buffer = GC.AllocateUninitializedArray<byte>(Math.Max(capacity, 64));

    /// <summary>Room for about <paramref name="entries"/> typical entries (and some more), so the buffer need not grow.</summary>
    public static CrlEntries ForAbout(int entries) =>
        new((int)Math.Min(Array.MaxLength, (long)Math.Max(entries, 0) * TypicalEntryBytes * 11 / 10 + 4096));

    public int Count { get; private set; }

    /// <summary>The entries' DER, each a RevokedCertificate SEQUENCE, without the list's own header.</summary>
    internal ReadOnlySpan<byte> Content => _buffer.AsSpan(0, _length);

    /// <param name="serialNumber">The INTEGER's content bytes (two's complement, minimal, as in the certificate).</param>
    /// <param name="reason">Null: no reasonCode (S/MIME BR 7.2.2: omitted rather than "unspecified").</param>
    // Called a million times from one loop: optimised at once rather than first run as tier-0 code (RevokedCertificates).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Add(ReadOnlySpan<byte> serialNumber, DateTimeOffset revokedAt, X509RevocationReason? reason)
    {
        if (serialNumber.IsEmpty || serialNumber.Length > 64 ||
            (serialNumber.Length > 1 && ((serialNumber[0] == 0 && serialNumber[1] < 0x80) || (serialNumber[0] == 0xFF && serialNumber[1] >= 0x80))))
            throw new ArgumentException("A serial number must be a minimally encoded INTEGER of at most 64 bytes.", nameof(serialNumber));
        var second = revokedAt.UtcTicks / TimeSpan.TicksPerSecond;
        if (second != _timeSecond)
        {
            _timeLength = CrlEncoder.WriteTime(_time, revokedAt, CrlEncoder.IsGeneralizedTime(revokedAt));
            _timeSecond = second;
        }
        var content = 2 + serialNumber.Length + _timeLength + (reason is null ? 0 : CrlEncoder.ReasonExtensions.Length + 1);
        if (_length + 2 + content > _buffer.Length) Grow(2 + content);
        var to = _buffer.AsSpan(_length, 2 + content);
        to[0] = 0x30; // content < 128: short-form lengths throughout
        to[1] = (byte)content;
        to[2] = 0x02;
        to[3] = (byte)serialNumber.Length;
        serialNumber.CopyTo(to[4..]);
        var at = 4 + serialNumber.Length;
        _time.AsSpan(0, _timeLength).CopyTo(to[at..]);
        at += _timeLength;
        if (reason is { } r)
        {
            CrlEncoder.ReasonExtensions.CopyTo(to[at..]);
            to[at + CrlEncoder.ReasonExtensions.Length] = (byte)r;
        }
        _length += 2 + content;
        Count++;
    }

    private void Grow(int needed)
    {
        var bigger = GC.AllocateUninitializedArray<byte>((int)Math.Min(Array.MaxLength, Math.Max((long)_buffer.Length * 2, (long)_length + needed)));
        _buffer.AsSpan(0, _length).CopyTo(bigger);
        _buffer = bigger;
    }
}

/// <summary>Encodes and signs an X.509 v2 CRL (RFC 5280 §5): the same fields and extensions .NET's
/// CertificateRevocationListBuilder writes (authority key identifier, CRL number, reasonCode per entry), but
/// in time linear in the number of entries and without an object per entry. The builder's cost grew superlinearly
/// (20,000 entries 0.2 s, 40,000 1.6 s, 100,000 over 20 s on the bench machine); a CRL of a million entries is
/// 46 MB, so entries are written straight into one DER buffer (<see cref="CrlEntries"/>) as the rows are read, and
/// the signed CRL is assembled from it with one copy.</summary>
public static class CrlEncoder
{
    private const string AuthorityKeyIdentifierOid = "2.5.29.35";
    private const string CrlNumberOid = "2.5.29.20";
    private const string ReasonCodeOid = "2.5.29.21";

    /// <summary>crlEntryExtensions holding only a non-critical reasonCode (2.5.29.21), up to the ENUMERATED's one
    /// content byte: SEQUENCE { SEQUENCE { OID, OCTET STRING { ENUMERATED } } }.</summary>
    internal static ReadOnlySpan<byte> ReasonExtensions => [0x30, 0x0C, 0x30, 0x0A, 0x06, 0x03, 0x55, 0x1D, 0x15, 0x04, 0x03, 0x0A, 0x01];

    /// <param name="deltaOf">A delta CRL: the number of its base CRL (deltaCRLIndicator, critical). Null: a complete CRL.</param>
    /// <param name="freshestCrlUrl">A complete CRL's pointer to its delta CRLs (freshestCRL, RFC 5280 §5.2.6); null: none.</param>
    public static byte[] Build(CertificateAuthority ca, long crlNumber, DateTimeOffset thisUpdate, DateTimeOffset nextUpdate,
        IReadOnlyCollection<CrlEntry> entries, long? deltaOf = null, string? freshestCrlUrl = null)
    {
        var list = new CrlEntries();
        foreach (var e in entries) list.Add(e.SerialNumber, e.RevokedAt, e.Reason);
        return Build(ca, crlNumber, thisUpdate, nextUpdate, list, deltaOf, freshestCrlUrl);
    }

    /// <inheritdoc cref="Build(CertificateAuthority, long, DateTimeOffset, DateTimeOffset, IReadOnlyCollection{CrlEntry}, long?, string?)"/>
    public static byte[] Build(CertificateAuthority ca, long crlNumber, DateTimeOffset thisUpdate, DateTimeOffset nextUpdate,
        CrlEntries entries, long? deltaOf = null, string? freshestCrlUrl = null) =>
        BuildFromParts(ca, crlNumber, thisUpdate, nextUpdate, [entries], deltaOf, freshestCrlUrl);

    /// <summary>The CRL of the entries of <paramref name="parts"/>, in that order (each part in serial order, every
    /// serial of a part before those of the next: what the CRL signer reads in parallel). The TBSCertList is hashed
    /// piece by piece where it lies and the signed CRL written once, in one array of its exact size: the entries are
    /// copied once, however many there are.</summary>
    public static byte[] BuildFromParts(CertificateAuthority ca, long crlNumber, DateTimeOffset thisUpdate, DateTimeOffset nextUpdate,
        IReadOnlyList<CrlEntries> parts, long? deltaOf = null, string? freshestCrlUrl = null)
    {
        if (ca.HashAlgorithm != HashAlgorithmName.SHA256) throw new NotSupportedException("CRLs are signed with SHA-256.");
        var algorithm = ca.SignatureGenerator.GetSignatureAlgorithmIdentifier(ca.HashAlgorithm);
        // TBSCertList up to revokedCertificates, and after it: small, written with AsnWriter.
        var head = new AsnWriter(AsnEncodingRules.DER);
        head.WriteInteger(1); // v2
        head.WriteEncodedValue(algorithm);
        head.WriteEncodedValue(ca.Certificate.SubjectName.RawData);
        WriteTime(head, thisUpdate);
        WriteTime(head, nextUpdate);
        var tail = new AsnWriter(AsnEncodingRules.DER);
        using (tail.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 0))) // crlExtensions [0] EXPLICIT
        using (tail.PushSequence())
        {
            WriteExtension(tail, AuthorityKeyIdentifierOid, w =>
            {
                using (w.PushSequence()) w.WriteOctetString(ca.SubjectKeyIdentifier, new Asn1Tag(TagClass.ContextSpecific, 0));
            });
            WriteExtension(tail, CrlNumberOid, w => w.WriteInteger(crlNumber));
            if (deltaOf is { } baseNumber)
                WriteExtension(tail, Oids.DeltaCrlIndicator, w => w.WriteInteger(baseNumber), critical: true); // critical: RFC 5280 §5.2.4
            if (freshestCrlUrl is not null)
                tail.WriteEncodedValue(EncodeExtension(Oids.FreshestCrl, FreshestCrl.Extension(freshestCrlUrl).RawData));
        }
        var headBytes = head.Encode();
        var tailBytes = tail.Encode();
        long listContent = 0;
        foreach (var part in parts) listContent += part.Content.Length;
        // revokedCertificates is omitted when empty (RFC 5280 §5.1.2.6), not written as an empty SEQUENCE.
        var listHeader = new byte[6];
        var listHeaderLength = listContent == 0 ? 0 : WriteHeader(listHeader, 0x30, Checked(listContent));
        var tbsContent = Checked(headBytes.Length + listHeaderLength + listContent + tailBytes.Length);
        var tbsHeader = new byte[6];
        var tbsHeaderLength = WriteHeader(tbsHeader, 0x30, tbsContent);

        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(tbsHeader, 0, tbsHeaderLength);
        hash.AppendData(headBytes);
        hash.AppendData(listHeader, 0, listHeaderLength);
        foreach (var part in parts) hash.AppendData(part.Content);
        hash.AppendData(tailBytes);
        var signature = ca.SignSha256Hash(hash.GetHashAndReset());

        // Certificate-like outer SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue BIT STRING (no unused bits) }.
        var bitString = 1 + signature.Length;
        var crlContent = Checked((long)tbsHeaderLength + tbsContent + algorithm.Length + 1 + LengthOfLength(bitString) + bitString);
        // Every byte is written below: no need to clear 46 MB first.
        var crl = GC.AllocateUninitializedArray<byte>(Checked(1L + LengthOfLength(crlContent) + crlContent));
        var to = crl.AsSpan();
        var at = WriteHeader(to, 0x30, crlContent);
        at += Put(to[at..], tbsHeader.AsSpan(0, tbsHeaderLength));
        at += Put(to[at..], headBytes);
        at += Put(to[at..], listHeader.AsSpan(0, listHeaderLength));
        foreach (var part in parts) at += Put(to[at..], part.Content);
        at += Put(to[at..], tailBytes);
        at += Put(to[at..], algorithm);
        at += WriteHeader(to[at..], 0x03, bitString);
        to[at++] = 0; // unused bits
        at += Put(to[at..], signature);
        if (at != crl.Length) throw new InvalidOperationException("CRL length miscounted.");
        return crl;

        static int Put(Span<byte> to, ReadOnlySpan<byte> bytes)
        {
            bytes.CopyTo(to);
            return bytes.Length;
        }

        static int Checked(long length) => length <= Array.MaxLength - 16
            ? (int)length : throw new InvalidOperationException("The CRL would be larger than an array can hold.");
    }

    /// <summary>The entries of a CRL, in the order the CRL lists them: serial (INTEGER content bytes), revocationDate (the
    /// encoded Time, for <see cref="IsTime"/>) and reason (null: none). A delta CRL is the difference between these, the base
    /// CRL relying parties hold, and the revocations now. Reads the DER in place: no object per entry.</summary>
    public static IEnumerable<(ReadOnlyMemory<byte> SerialNumber, ReadOnlyMemory<byte> RevocationDate, X509RevocationReason? Reason)> ReadEntries(
        ReadOnlyMemory<byte> der)
    {
        var list = RevokedCertificates(der);
        if (list.IsEmpty) yield break;
        var at = HeaderLength(list.Span);
        while (at < list.Length)
        {
            // RevokedCertificate ::= SEQUENCE { userCertificate INTEGER, revocationDate Time, crlEntryExtensions Extensions OPTIONAL }
            var (entryHeader, entryLength) = ReadHeader(list.Span[at..], 0x30);
            var entry = list.Slice(at + entryHeader, entryLength);
            at += entryHeader + entryLength;
            var (serialHeader, serialLength) = ReadHeader(entry.Span, 0x02);
            var serial = entry.Slice(serialHeader, serialLength);
            var rest = entry[(serialHeader + serialLength)..];
            var (timeHeader, timeLength) = ReadHeader(rest.Span, rest.Span[0]);
            var time = rest[..(timeHeader + timeLength)];
            rest = rest[(timeHeader + timeLength)..];
            yield return (serial, time, rest.IsEmpty ? null : ReadReason(rest));
        }
    }

    public delegate bool SerialWanted(ReadOnlySpan<byte> serialNumber);

    /// <param name="revocationDate">The entry's encoded Time (for <see cref="IsTime"/>).</param>
    public delegate void EntryRead(ReadOnlySpan<byte> serialNumber, ReadOnlySpan<byte> revocationDate, X509RevocationReason? reason);

    /// <summary>The entries of a CRL as <see cref="ReadEntries"/> reads them, for a pass over many to find a few: a loop over the
    /// bytes in place (the enumerator's slices of memory cost about ten times as much per entry, a quarter of a second at a
    /// million), the serial offered to <paramref name="wanted"/> and the rest of the entry read only for those it accepts.</summary>
    public static void FindEntries(ReadOnlyMemory<byte> der, SerialWanted wanted, EntryRead found)
    {
        var list = RevokedCertificates(der);
        if (list.IsEmpty) return;
        var span = list.Span;
        var at = HeaderLength(span);
        while (at < span.Length)
        {
            var (entryHeader, entryLength) = ReadHeader(span[at..], 0x30);
            var entryAt = at + entryHeader;
            at = entryAt + entryLength;
            var (serialHeader, serialLength) = ReadHeader(span.Slice(entryAt, entryLength), 0x02);
            var serial = span.Slice(entryAt + serialHeader, serialLength);
            if (!wanted(serial)) continue;
            var timeAt = entryAt + serialHeader + serialLength;
            var (timeHeader, timeLength) = ReadHeader(span[timeAt..at], span[timeAt]);
            var extensionsAt = timeAt + timeHeader + timeLength;
            found(serial, span[timeAt..extensionsAt], extensionsAt == at ? null : ReadReason(list[extensionsAt..at]));
        }
    }

    /// <summary>The revokedCertificates SEQUENCE of a CRL (its encoding, header included); empty when it has none.</summary>
    private static ReadOnlyMemory<byte> RevokedCertificates(ReadOnlyMemory<byte> der)
    {
        var tbs = new AsnReader(der, AsnEncodingRules.DER).ReadSequence().ReadSequence();
        tbs.ReadInteger(); // version
        tbs.ReadEncodedValue(); // signature algorithm
        tbs.ReadEncodedValue(); // issuer
        tbs.ReadEncodedValue(); // thisUpdate
        if (tbs.HasData && tbs.PeekTag().TagValue is (int)UniversalTagNumber.UtcTime or (int)UniversalTagNumber.GeneralizedTime)
            tbs.ReadEncodedValue(); // nextUpdate
        return tbs.HasData && tbs.PeekTag() == Asn1Tag.Sequence ? tbs.ReadEncodedValue() : ReadOnlyMemory<byte>.Empty;
    }

    private static X509RevocationReason? ReadReason(ReadOnlyMemory<byte> extensionsDer)
    {
        // What CrlEntries writes: the reasonCode alone, non-critical. Anything else is parsed in full.
        if (extensionsDer.Length == ReasonExtensions.Length + 1 && extensionsDer.Span.StartsWith(ReasonExtensions))
            return (X509RevocationReason)extensionsDer.Span[^1];
        var extensions = new AsnReader(extensionsDer, AsnEncodingRules.DER).ReadSequence();
        while (extensions.HasData)
        {
            var ext = extensions.ReadSequence();
            var oid = ext.ReadObjectIdentifier();
            if (ext.PeekTag() == Asn1Tag.Boolean) ext.ReadBoolean();
            var value = ext.ReadOctetString();
            if (oid == ReasonCodeOid) return new AsnReader(value, AsnEncodingRules.DER).ReadEnumeratedValue<X509RevocationReason>();
        }
        return null;
    }

    /// <summary>DER header (tag, definite length) of a value this encoder wrote: its size and the content length.</summary>
    private static (int Header, int Length) ReadHeader(ReadOnlySpan<byte> der, byte tag)
    {
        if (der.Length < 2 || der[0] != tag) throw new AsnContentException("Unexpected tag in a CRL entry.");
        if (der[1] < 0x80) return (2, der[1]);
        var count = der[1] & 0x7F;
        if (count is 0 or > 4 || der.Length < 2 + count) throw new AsnContentException("Bad length in a CRL entry.");
        var length = 0;
        for (var i = 0; i < count; i++) length = (length << 8) | der[2 + i];
        return (2 + count, length);
    }

    private static int HeaderLength(ReadOnlySpan<byte> der) => der[1] < 0x80 ? 2 : 2 + (der[1] & 0x7F);

    private static int LengthOfLength(int length) => length < 0x80 ? 1 : length < 0x100 ? 2 : length < 0x10000 ? 3 : length < 0x1000000 ? 4 : 5;

    /// <summary>Writes tag and DER definite length; returns the bytes written.</summary>
    internal static int WriteHeader(Span<byte> to, byte tag, int length)
    {
        to[0] = tag;
        if (length < 0x80)
        {
            to[1] = (byte)length;
            return 2;
        }
        var count = LengthOfLength(length) - 1;
        to[1] = (byte)(0x80 | count);
        for (var i = 0; i < count; i++) to[2 + i] = (byte)(length >> (8 * (count - 1 - i)));
        return 2 + count;
    }

    private static void WriteExtension(AsnWriter w, string oid, Action<AsnWriter> value, bool critical = false)
    {
        var inner = new AsnWriter(AsnEncodingRules.DER);
        value(inner);
        using (w.PushSequence())
        {
            w.WriteObjectIdentifier(oid);
            if (critical) w.WriteBoolean(true); // critical = FALSE is the DEFAULT, so omitted in DER
            w.WriteOctetString(inner.Encode());
        }
    }

    private static byte[] EncodeExtension(string oid, byte[] value)
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            w.WriteObjectIdentifier(oid);
            w.WriteOctetString(value);
        }
        return w.Encode();
    }

    /// <summary>RFC 5280 §5.1.2.4: UTCTime through 2049, GeneralizedTime from 2050; whole seconds.</summary>
    private static void WriteTime(AsnWriter w, DateTimeOffset t)
    {
        t = t.ToUniversalTime();
        t = new DateTimeOffset(t.Ticks - t.Ticks % TimeSpan.TicksPerSecond, TimeSpan.Zero);
        if (t.Year < 2050) w.WriteUtcTime(t);
        else w.WriteGeneralizedTime(t, omitFractionalSeconds: true);
    }

    internal static bool IsGeneralizedTime(DateTimeOffset t) => t.UtcDateTime.Year >= 2050;

    /// <summary>Whether <paramref name="encoded"/> (an entry's revocationDate as <see cref="ReadEntries"/> and <see cref="FindEntries"/>
    /// give it) is <paramref name="t"/> as <see cref="CrlEntries"/> writes it: the same second, the same encoding.</summary>
    internal static bool IsTime(ReadOnlySpan<byte> encoded, DateTimeOffset t)
    {
        Span<byte> written = stackalloc byte[17];
        return encoded.SequenceEqual(written[..WriteTime(written, t, IsGeneralizedTime(t))]);
    }

    /// <summary>The same encoding as <see cref="WriteTime(AsnWriter, DateTimeOffset)"/>, written in place: YYMMDDHHMMSSZ
    /// (UTCTime) or YYYYMMDDHHMMSSZ (GeneralizedTime). Returns the bytes written.</summary>
    internal static int WriteTime(Span<byte> to, DateTimeOffset t, bool generalized)
    {
        var u = t.UtcDateTime;
        var at = 2;
        to[0] = generalized ? (byte)0x18 : (byte)0x17;
        to[1] = generalized ? (byte)15 : (byte)13;
        if (generalized) Two(to, ref at, u.Year / 100);
        Two(to, ref at, u.Year % 100);
        Two(to, ref at, u.Month);
        Two(to, ref at, u.Day);
        Two(to, ref at, u.Hour);
        Two(to, ref at, u.Minute);
        Two(to, ref at, u.Second);
        to[at++] = (byte)'Z';
        return at;

        static void Two(Span<byte> to, ref int at, int value)
        {
            to[at++] = (byte)('0' + value / 10);
            to[at++] = (byte)('0' + value % 10);
        }
    }
}
