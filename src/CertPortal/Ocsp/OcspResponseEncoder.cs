using System.Formats.Asn1;
using System.Security.Cryptography;
using CertPortal.Authority;
using CertPortal.Revocation;

namespace CertPortal.Ocsp;

/// <summary>OCSPResponseStatus (RFC 6960 4.2.1). 4 is not used.</summary>
public enum OcspResponseStatus { Successful = 0, MalformedRequest = 1, InternalError = 2, TryLater = 3, SigRequired = 5, Unauthorized = 6 }

public enum OcspCertStatus { Good, Revoked, Unknown }

/// <summary>What the responder says about one certificate. <paramref name="Reason"/> null: no reasonCode (S/MIME BR
/// 7.2.2 wants "unspecified" omitted, as in the CRL). <paramref name="ArchiveCutoff"/>: set for a certificate that has
/// expired, whose status is still given because no record is ever deleted (RFC 6960 4.4.4).</summary>
public sealed record CertificateStatusAnswer(OcspCertStatus Status, DateTimeOffset? RevokedAt, RevocationReason? Reason,
    DateTimeOffset? ArchiveCutoff = null);

/// <summary>Encodes and signs OCSP responses (RFC 6960 4.2, RFC 5019 profile) with a delegated responder's .NET key,
/// the way <see cref="CrlEncoder"/> signs CRLs: DER written with AsnWriter, the signature made by the key's
/// X509SignatureGenerator. Times are GeneralizedTime in whole seconds (RFC 5019 2.2.4); the responder is named by
/// key hash (RFC 5019 2.2.3) and its certificate travels in the response, so a client can check the delegation.</summary>
public static class OcspResponseEncoder
{
    private static readonly Asn1Tag Context0 = new(TagClass.ContextSpecific, 0, isConstructed: true);
    private static readonly Asn1Tag Context1 = new(TagClass.ContextSpecific, 1, isConstructed: true);
    private static readonly Asn1Tag Context2 = new(TagClass.ContextSpecific, 2, isConstructed: true);

    /// <summary>An unsigned error response: OCSPResponse with only responseStatus (RFC 6960 4.2.1).</summary>
    public static byte[] Error(OcspResponseStatus status)
    {
        var w = new AsnWriter(AsnEncodingRules.DER);
        using (w.PushSequence()) w.WriteEnumeratedValue(status);
        return w.Encode();
    }

    public static byte[] Build(OcspSigner signer, DateTimeOffset producedAt, IReadOnlyList<(CertId Id, CertificateStatusAnswer Answer)> responses,
        DateTimeOffset thisUpdate, DateTimeOffset nextUpdate, byte[]? nonce)
    {
        var key = signer.Key;
        var algorithm = key.SignatureGenerator.GetSignatureAlgorithmIdentifier(key.HashAlgorithm);
        var tbs = new AsnWriter(AsnEncodingRules.DER);
        using (tbs.PushSequence()) // ResponseData; version v1 is the DEFAULT, so omitted
        {
            using (tbs.PushSequence(Context2)) tbs.WriteOctetString(signer.KeyHash); // responderID byKey
            WriteTime(tbs, producedAt);
            using (tbs.PushSequence())
            {
                foreach (var (id, answer) in responses) WriteSingleResponse(tbs, id, answer, thisUpdate, nextUpdate);
            }
            if (nonce is not null)
            {
                using (tbs.PushSequence(Context1))
                using (tbs.PushSequence())
                {
                    // Echoed as sent (RFC 8954 2.1), whichever of the two encodings the client used.
                    using (tbs.PushSequence())
                    {
                        tbs.WriteObjectIdentifier(Oids.OcspNonce);
                        tbs.WriteOctetString(nonce);
                    }
                }
            }
        }
        var tbsBytes = tbs.Encode();
        var signature = key.SignatureGenerator.SignData(tbsBytes, key.HashAlgorithm);

        var basic = new AsnWriter(AsnEncodingRules.DER);
        using (basic.PushSequence())
        {
            basic.WriteEncodedValue(tbsBytes);
            basic.WriteEncodedValue(algorithm);
            basic.WriteBitString(signature);
            using (basic.PushSequence(Context0))
            using (basic.PushSequence())
                basic.WriteEncodedValue(signer.CertificateDer);
        }

        var response = new AsnWriter(AsnEncodingRules.DER);
        using (response.PushSequence())
        {
            response.WriteEnumeratedValue(OcspResponseStatus.Successful);
            using (response.PushSequence(Context0))
            using (response.PushSequence())
            {
                response.WriteObjectIdentifier(Oids.OcspBasicResponse);
                response.WriteOctetString(basic.Encode());
            }
        }
        return response.Encode();
    }

    private static void WriteSingleResponse(AsnWriter w, CertId id, CertificateStatusAnswer answer, DateTimeOffset thisUpdate, DateTimeOffset nextUpdate)
    {
        using (w.PushSequence())
        {
            w.WriteEncodedValue(id.Encoded);
            switch (answer.Status)
            {
                case OcspCertStatus.Good:
                    w.WriteNull(new Asn1Tag(TagClass.ContextSpecific, 0));
                    break;
                case OcspCertStatus.Revoked:
                    using (w.PushSequence(Context1)) // RevokedInfo, IMPLICIT
                    {
                        WriteTime(w, answer.RevokedAt!.Value);
                        if (answer.Reason is { } reason)
                            using (w.PushSequence(Context0)) w.WriteEnumeratedValue(reason);
                    }
                    break;
                default:
                    w.WriteNull(new Asn1Tag(TagClass.ContextSpecific, 2));
                    break;
            }
            WriteTime(w, thisUpdate);
            using (w.PushSequence(Context0)) WriteTime(w, nextUpdate);
            if (answer.ArchiveCutoff is { } cutoff)
            {
                using (w.PushSequence(Context1)) // singleExtensions
                using (w.PushSequence())
                using (w.PushSequence())
                {
                    w.WriteObjectIdentifier(Oids.OcspArchiveCutoff);
                    var value = new AsnWriter(AsnEncodingRules.DER);
                    WriteTime(value, cutoff);
                    w.WriteOctetString(value.Encode());
                }
            }
        }
    }

    private static void WriteTime(AsnWriter w, DateTimeOffset t) => w.WriteGeneralizedTime(CrlSigner.WholeSeconds(t), omitFractionalSeconds: true);

    /// <summary>KeyHash of ResponderID: SHA-1 of the subjectPublicKey BIT STRING's value (RFC 6960 4.2.1).</summary>
    public static byte[] KeyHash(System.Security.Cryptography.X509Certificates.X509Certificate2 certificate) =>
        Sha1(certificate.PublicKey.EncodedKeyValue.RawData);

    /// <summary>SHA-1 where RFC 6960 names it (ResponderID KeyHash; CertIDs of RFC 5019 clients): an identifier, not a signature.</summary>
#pragma warning disable CA5350
    internal static byte[] Sha1(byte[] data) => SHA1.HashData(data);
#pragma warning restore CA5350
}
