using System.Formats.Asn1;
using CertPortal.Authority;

namespace CertPortal.Ocsp;

/// <summary>CertID (RFC 6960 4.1.1): which certificate is asked about, named by hashes of its issuer's name and key and
/// by its serial. <see cref="Encoded"/> is echoed unchanged in the answer, as clients match on it.</summary>
public sealed record CertId(string HashAlgorithm, byte[] IssuerNameHash, byte[] IssuerKeyHash, byte[] SerialNumber, byte[] Encoded)
{
    /// <summary>Upper-case hex, as the Certificates table stores serials.</summary>
    public string SerialHex => Convert.ToHexString(SerialNumber);
}

/// <summary>An OCSPRequest: one or more CertIDs and, when asked for, the nonce to echo (the extnValue as sent).</summary>
public sealed record OcspRequest(IReadOnlyList<CertId> Certificates, byte[]? Nonce)
{
    /// <summary>More than a client ever asks for in one request (RFC 5019 clients ask for one).</summary>
    public const int MaxCertificates = 16;
    /// <summary>A request with a dozen CertIDs and a nonce is well under 2 KiB; anything much larger is not a request.</summary>
    public const int MaxBytes = 8 * 1024;
    /// <summary>RFC 8954 2.1: nonces of 1 to 32 octets are honoured; one of up to <see cref="MaxAcceptedNonceLength"/>
    /// is answered without a nonce.</summary>
    public const int MaxNonceLength = 32;
    /// <summary>RFC 9654 2.1 (which raised RFC 8954's 32): a nonce of no octets or more than this makes the request malformed.</summary>
    public const int MaxAcceptedNonceLength = 128;

    /// <summary>Null for anything that is not a DER OCSPRequest we can answer (the caller says malformedRequest).
    /// The optional signature of a signed request is not checked: the responder answers anyone.</summary>
    public static OcspRequest? TryRead(ReadOnlyMemory<byte> der)
    {
        if (der.Length is 0 or > MaxBytes) return null;
        try
        {
            return Read(der);
        }
        catch (AsnContentException)
        {
            return null;
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    private static readonly Asn1Tag Explicit0 = new(TagClass.ContextSpecific, 0, isConstructed: true);
    private static readonly Asn1Tag Explicit1 = new(TagClass.ContextSpecific, 1, isConstructed: true);
    private static readonly Asn1Tag Explicit2 = new(TagClass.ContextSpecific, 2, isConstructed: true);

    private static OcspRequest? Read(ReadOnlyMemory<byte> der)
    {
        var outer = new AsnReader(der, AsnEncodingRules.DER);
        var request = outer.ReadSequence();
        outer.ThrowIfNotEmpty();
        var tbs = request.ReadSequence();
        if (request.HasData && request.PeekTag() == Explicit0) request.ReadEncodedValue(); // optionalSignature
        request.ThrowIfNotEmpty();

        if (tbs.PeekTag() == Explicit0)
        {
            var version = tbs.ReadSequence(Explicit0);
            if (!version.TryReadInt32(out var v) || v != 0) return null; // only v1 exists
            version.ThrowIfNotEmpty();
        }
        if (tbs.HasData && tbs.PeekTag() == Explicit1) tbs.ReadEncodedValue(); // requestorName

        var list = tbs.ReadSequence();
        var certificates = new List<CertId>();
        while (list.HasData)
        {
            if (certificates.Count == MaxCertificates) return null;
            var single = list.ReadSequence();
            var encoded = single.ReadEncodedValue().ToArray();
            if (single.HasData && !ExtensionsAnswerable(single.ReadSequence(Explicit0), out _)) return null;
            single.ThrowIfNotEmpty();
            certificates.Add(ReadCertId(encoded));
        }
        if (certificates.Count == 0) return null;

        byte[]? nonce = null;
        if (tbs.HasData && tbs.PeekTag() == Explicit2)
        {
            if (!ExtensionsAnswerable(tbs.ReadSequence(Explicit2), out nonce)) return null;
        }
        tbs.ThrowIfNotEmpty();
        return new OcspRequest(certificates, nonce);
    }

    private static CertId ReadCertId(byte[] encoded)
    {
        var outer = new AsnReader(encoded, AsnEncodingRules.DER);
        var id = outer.ReadSequence();
        var algorithm = id.ReadSequence();
        var oid = algorithm.ReadObjectIdentifier();
        if (algorithm.HasData) algorithm.ReadNull(); // parameters: absent or NULL for the SHA family
        algorithm.ThrowIfNotEmpty();
        var nameHash = id.ReadOctetString();
        var keyHash = id.ReadOctetString();
        var serial = id.ReadIntegerBytes().ToArray();
        id.ThrowIfNotEmpty();
        return new CertId(oid, nameHash, keyHash, serial, encoded);
    }

    /// <summary>Reads an Extensions field. The nonce is the only extension understood; an unknown one marked critical
    /// (RFC 5280 4.2 sense), or a nonce of a length RFC 9654 2.1 says to refuse, makes the request unanswerable; other
    /// extensions are ignored.</summary>
    private static bool ExtensionsAnswerable(AsnReader wrapper, out byte[]? nonce)
    {
        nonce = null;
        var extensions = wrapper.ReadSequence();
        wrapper.ThrowIfNotEmpty();
        while (extensions.HasData)
        {
            var extension = extensions.ReadSequence();
            var oid = extension.ReadObjectIdentifier();
            var critical = extension.PeekTag() == Asn1Tag.Boolean && extension.ReadBoolean();
            var value = extension.ReadOctetString();
            extension.ThrowIfNotEmpty();
            if (oid == Oids.OcspNonce)
            {
                // RFC 8954: extnValue holds an OCTET STRING of the nonce; older clients put raw bytes there. Either is echoed as sent.
                var length = NonceLength(value);
                if (length is 0 or > MaxAcceptedNonceLength) return false;
                if (length <= MaxNonceLength) nonce = value;
            }
            else if (critical)
                return false;
        }
        return true;
    }

    private static int NonceLength(byte[] extnValue)
    {
        try
        {
            var r = new AsnReader(extnValue, AsnEncodingRules.DER);
            var inner = r.ReadOctetString();
            return r.HasData ? extnValue.Length : inner.Length;
        }
        catch (AsnContentException)
        {
            return extnValue.Length;
        }
    }
}
