using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CertPortal.Authority;

/// <summary>A signed certificate as the issuer hands it on: its DER and what the record needs from it.</summary>
public sealed record SignedCertificate(byte[] Der, string Subject, DateTimeOffset NotBefore, DateTimeOffset NotAfter);

/// <summary>Writes a certificate's DER (RFC 5280 §4.1) exactly as <see cref="CertificateRequest.Create(X500DistinguishedName,
/// X509SignatureGenerator, DateTimeOffset, DateTimeOffset, ReadOnlySpan{byte})"/> does (a test compares the bytes), in
/// two steps: the TBSCertificate, which is linted, then the signed certificate. Create cannot be split that way, and
/// it loads its result into an X509Certificate2, where OpenSSL 3 decodes the public key through its provider lookup:
/// in a profile of the enrollment path that load, made twice (lint copy and real certificate), was the largest single
/// cost. The issuer needs the bytes only.</summary>
public static class CertificateEncoder
{
    private static readonly Asn1Tag Explicit0 = new(TagClass.ContextSpecific, 0, isConstructed: true);
    private static readonly Asn1Tag Explicit3 = new(TagClass.ContextSpecific, 3, isConstructed: true);

    /// <summary>TBSCertificate: v3, the serial, the signature algorithm the issuer will use, the issuer and subject
    /// names, the validity, the request's public key and extensions.</summary>
    public static byte[] Tbs(CertificateRequest request, X500DistinguishedName issuer, ReadOnlySpan<byte> signatureAlgorithm,
        DateTimeOffset notBefore, DateTimeOffset notAfter, ReadOnlySpan<byte> serial)
    {
        if (notAfter < notBefore) throw new ArgumentException("notAfter is earlier than notBefore.", nameof(notAfter));
        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            using (w.PushSequence(Explicit0)) w.WriteInteger(2);
            w.WriteInteger(serial);
            w.WriteEncodedValue(signatureAlgorithm);
            w.WriteEncodedValue(issuer.RawData);
            using (w.PushSequence())
            {
                WriteTime(w, notBefore);
                WriteTime(w, notAfter);
            }
            w.WriteEncodedValue(request.SubjectName.RawData);
            using (w.PushSequence())
            {
                using (w.PushSequence())
                {
                    w.WriteObjectIdentifier(request.PublicKey.Oid.Value!);
                    if (request.PublicKey.EncodedParameters is { RawData.Length: > 0 } parameters) w.WriteEncodedValue(parameters.RawData);
                }
                w.WriteBitString(request.PublicKey.EncodedKeyValue.RawData);
            }
            if (request.CertificateExtensions.Count > 0)
            {
                using (w.PushSequence(Explicit3))
                using (w.PushSequence())
                {
                    foreach (var e in request.CertificateExtensions)
                    {
                        using (w.PushSequence())
                        {
                            w.WriteObjectIdentifier(e.Oid!.Value!);
                            if (e.Critical) w.WriteBoolean(true); // DEFAULT FALSE: written only when true
                            w.WriteOctetString(e.RawData);
                        }
                    }
                }
            }
        }
        return w.Encode();
    }

    /// <summary>Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }.</summary>
    public static byte[] Certificate(ReadOnlySpan<byte> tbs, ReadOnlySpan<byte> signatureAlgorithm, ReadOnlySpan<byte> signature)
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence())
        {
            w.WriteEncodedValue(tbs);
            w.WriteEncodedValue(signatureAlgorithm);
            w.WriteBitString(signature);
        }
        return w.Encode();
    }

    /// <summary>RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, whole seconds.</summary>
    private static void WriteTime(AsnWriter w, DateTimeOffset t)
    {
        var utc = t.ToUniversalTime();
        utc = new DateTimeOffset(utc.Ticks - utc.Ticks % TimeSpan.TicksPerSecond, TimeSpan.Zero);
        if (utc.Year is >= 1950 and < 2050) w.WriteUtcTime(utc);
        else w.WriteGeneralizedTime(utc, omitFractionalSeconds: true);
    }
}

/// <summary>The parts of a TBSCertificate the linter reads, decoded in managed code (no OpenSSL, no key decoding).</summary>
public sealed class TbsCertificate
{
    private static readonly Asn1Tag Explicit0 = new(TagClass.ContextSpecific, 0, isConstructed: true);
    private static readonly Asn1Tag Explicit3 = new(TagClass.ContextSpecific, 3, isConstructed: true);

    public int Version { get; private init; }
    public byte[] SerialNumber { get; private init; } = [];
    public DateTimeOffset NotBefore { get; private init; }
    public DateTimeOffset NotAfter { get; private init; }
    public X500DistinguishedName Subject { get; private init; } = null!;
    public IReadOnlyList<X509Extension> Extensions { get; private init; } = [];

    /// <summary>The TBSCertificate inside a DER certificate.</summary>
    public static TbsCertificate FromCertificate(ReadOnlyMemory<byte> certificate) =>
        Read(new AsnReader(certificate, AsnEncodingRules.DER).ReadSequence().ReadEncodedValue());

    public static TbsCertificate Read(ReadOnlyMemory<byte> tbs)
    {
        var r = new AsnReader(tbs, AsnEncodingRules.DER).ReadSequence();
        var version = 1;
        if (r.PeekTag().HasSameClassAndValue(Explicit0))
        {
            var v = r.ReadSequence(Explicit0);
            version = (int)v.ReadInteger() + 1;
            v.ThrowIfNotEmpty();
        }
        var serial = r.ReadIntegerBytes().ToArray();
        r.ReadEncodedValue(); // signature algorithm
        r.ReadEncodedValue(); // issuer
        var validity = r.ReadSequence();
        var notBefore = ReadTime(validity);
        var notAfter = ReadTime(validity);
        validity.ThrowIfNotEmpty();
        var subject = new X500DistinguishedName(r.ReadEncodedValue().Span);
        r.ReadEncodedValue(); // subjectPublicKeyInfo
        var extensions = new List<X509Extension>();
        while (r.HasData)
        {
            var tag = r.PeekTag();
            if (!tag.HasSameClassAndValue(Explicit3))
            {
                r.ReadEncodedValue(); // issuerUniqueID, subjectUniqueID
                continue;
            }
            var list = r.ReadSequence(Explicit3).ReadSequence();
            while (list.HasData)
            {
                var e = list.ReadSequence();
                var oid = e.ReadObjectIdentifier();
                var critical = e.PeekTag().HasSameClassAndValue(Asn1Tag.Boolean) && e.ReadBoolean();
                var value = e.ReadOctetString();
                e.ThrowIfNotEmpty();
                extensions.Add(Typed(oid, value, critical));
            }
        }
        return new TbsCertificate
        {
            Version = version, SerialNumber = serial, NotBefore = notBefore, NotAfter = notAfter, Subject = subject, Extensions = extensions,
        };
    }

    private static DateTimeOffset ReadTime(AsnReader r) =>
        r.PeekTag().HasSameClassAndValue(Asn1Tag.UtcTime) ? r.ReadUtcTime() : r.ReadGeneralizedTime();

    /// <summary>The typed extension classes X509Certificate2.Extensions would give, so the linter reads both alike.</summary>
    private static X509Extension Typed(string oid, byte[] value, bool critical) => oid switch
    {
        Oids.KeyUsage => new X509KeyUsageExtension(new AsnEncodedData(OidOf(oid), value), critical),
        Oids.ExtendedKeyUsage => new X509EnhancedKeyUsageExtension(new AsnEncodedData(OidOf(oid), value), critical),
        Oids.SubjectKeyIdentifier => new X509SubjectKeyIdentifierExtension(new AsnEncodedData(OidOf(oid), value), critical),
        Oids.AuthorityKeyIdentifier => new X509AuthorityKeyIdentifierExtension(value, critical),
        Oids.AuthorityInfoAccess => new X509AuthorityInformationAccessExtension(value, critical),
        Oids.SubjectAltName => new X509SubjectAlternativeNameExtension(value, critical),
        _ => new X509Extension(new AsnEncodedData(OidOf(oid), value), critical),
    };

    // An Oid made from a string (new Oid(string), and so AsnEncodedData's and X509Extension's string constructors) first looks the
    // string up as a friendly name in OpenSSL's object table (a binary search of its names under a global lock) and finds nothing for
    // a dotted OID: 0.4-0.5 µs per extension in a loop, six per certificate read, against 0.02-0.07 µs with an Oid made once. Sharing
    // one is what .NET's own extension types do (an Oid's value and friendly name can be set only once).
    private static readonly Dictionary<string, Oid> ExtensionOids = new[]
    {
        Oids.KeyUsage, Oids.ExtendedKeyUsage, Oids.SubjectKeyIdentifier, Oids.CrlDistributionPoints, Oids.CertificatePolicies, Oids.FreshestCrl,
        Oids.BasicConstraints,
    }.ToDictionary(o => o, o => new Oid(o, null), StringComparer.Ordinal);

    private static Oid OidOf(string oid) => ExtensionOids.GetValueOrDefault(oid) ?? new Oid(oid);
}
