using System.Security.Cryptography;
using System.Security.Cryptography.Pkcs;
using System.Security.Cryptography.X509Certificates;
using System.Security.Cryptography.Xml;
using System.Text;
using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Escrow;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Renewal;

/// <summary><c>Cms</c>: a CMS SignedData (DER as base64, or PEM) signed by the key of the certificate being renewed, with a
/// signingTime attribute (<c>openssl cms -sign -nodetach -binary</c> makes exactly this). Its content is the new PKCS#10
/// request (DER or PEM), or, for a key the server generates and escrows, <c>{"keyAlgorithm":"RSA-3072","requestIdAndPasswordSha256":"…"}</c>
/// (<see cref="ServerKeyRenewal"/>); the PKCS#12 with that key is then protected by <c>Pkcs12Password</c> (same rules and options as
/// token enrollment), and <c>RequestId</c> is required.
/// <c>ExpectedSerialNumber</c>, optional: the certificate the caller means to renew (any form <see cref="SerialNumber.TryNormalize"/>
/// takes); a request signed by another certificate is refused instead of renewing that one.</summary>
public sealed record RenewalRequest(string? Cms, string? Pkcs12Password = null, string? Pkcs12Format = null, string? RequestId = null,
    string? ExpectedSerialNumber = null)
{
    // The password must never reach a log through a record's generated ToString.
    public override string ToString() => $"renewal request ({Cms?.Length ?? 0} characters of CMS)";
}

/// <summary>Self-service renewal, as EST's re-enroll (RFC 7030 4.2.2) and EJBCA's renewal do it: the holder proves
/// the current certificate's key by signing the request for the next one, so no administrator and no token is needed.
/// Same mailbox, same display name, same profile; a new key unless <see cref="RenewalOptions.AllowKeyReuse"/>. The old
/// certificate stays valid (until it expires, or <see cref="RenewalOptions.SupersedeAfter"/>); each certificate is
/// renewed once, decided by a conditional update in the transaction that records the successor.</summary>
public sealed class RenewalService(
    CertPortalDbContext db, EnrollmentService enrollment, CertificateIssuer issuer, KeyArchive archive, ServerKeyRenewal serverKeys, RenewalOptions options,
    TimeProvider time, ILogger<RenewalService> logger)
{
    public const int MaxCmsLength = 48 * 1024;

    /// <summary>The page where a person renews (the link in expiry reminders); the serial only names the certificate.</summary>
    public static string LinkFor(CertPortalOptions options, string? serial) =>
        $"{options.PortalUrl!.TrimEnd('/')}/renew" + (string.IsNullOrEmpty(serial) ? "" : $"?serial={Uri.EscapeDataString(serial)}");

    public async Task<Outcome<EnrollmentResult>> RenewAsync(RenewalRequest request, CancellationToken ct)
    {
        string? expected = null;
        if (request.ExpectedSerialNumber is not null && !SerialNumber.TryNormalize(request.ExpectedSerialNumber, out expected))
            return Failure.Unprocessable("Invalid expectedSerialNumber.",
                "expectedSerialNumber must be the serial number of the certificate to renew, in hexadecimal (colons allowed).");
        if (Decode(request.Cms) is not { } cms)
            return Failure.Unprocessable("Unreadable renewal request.",
                "cms must be a CMS SignedData (base64 DER or PEM) with the new certificate request inside (openssl cms -sign -nodetach -binary -outform DER).");
        if (cms.SignerInfos.Count != 1)
            return Failure.Unprocessable("One signer expected.", "The renewal request must be signed once, by the key of the certificate to renew.");
        if (cms.ContentInfo.ContentType.Value != Oids.CmsData || cms.ContentInfo.Content.Length == 0)
            return Failure.Unprocessable("No certificate request inside.", "The signed content must be the new PKCS#10 certificate request (content type id-data, not detached).");

        var signer = cms.SignerInfos[0];
        var current = await FindSignerCertificateAsync(cms, signer, ct);
        if (current is null) return WrongSigner("The request is not signed with a certificate this CA issued.");
        using var currentCert = X509CertificateLoader.LoadCertificate(current.Der);
        // The signature is the holder's proof of possession and, through the signed signingTime, of freshness: over a digest
        // that collisions break (MD5, SHA-1) it proves neither, as CsrInspector holds for a CSR's own signature.
        if (signer.DigestAlgorithm.Value is not (Oids.Sha256 or Oids.Sha384 or Oids.Sha512) || CsrInspector.IsWeakSignatureAlgorithm(signer.SignatureAlgorithm.Value))
            return Failure.Unprocessable("Weak digest algorithm.",
                $"The renewal request is signed over {signer.DigestAlgorithm.FriendlyName ?? signer.DigestAlgorithm.Value}: sign with SHA-256, SHA-384 or SHA-512 (openssl cms -sign uses SHA-256).");
        // The signature is checked with our own copy of the certificate; a certificate inside the message that merely
        // claims the same issuer and serial (with another key) must not stand in for it.
        try
        {
            if (KeyAgreementCertificates.IsKeyAgreementOnly(currentCert))
            {
                // Against a stand-in with the certificate's key (see KeyAgreementCertificates), and only against it: SignerInfo looks
                // for the signer among the certificates the message carries first, so they are taken out.
                using var standIn = KeyAgreementCertificates.StandInForSignatureCheck(currentCert);
                foreach (var carried in cms.Certificates) cms.RemoveCertificate(carried);
                signer = cms.SignerInfos[0];
                signer.CheckSignature(new X509Certificate2Collection(standIn), verifySignatureOnly: true);
            }
            else signer.CheckSignature(new X509Certificate2Collection(currentCert), verifySignatureOnly: true);
        }
        catch (CryptographicException)
        {
            return WrongSigner($"The signature does not verify with the key of certificate {current.SerialNumber}: sign with that certificate's own key.");
        }
        catch (NotSupportedException)
        {
            // SignedCms knows signature algorithms the platform may not: ML-DSA and SLH-DSA throw PlatformNotSupportedException
            // on OpenSSL before 3.5, reached by anyone who names one with a carried certificate claiming an issued serial.
            return Failure.Unprocessable("Unsupported signature algorithm.",
                $"The signature ({signer.SignatureAlgorithm.Value}) cannot be verified here: sign with the key of certificate {current.SerialNumber} (RSA or ECDSA).");
        }
        if (signer.Certificate is { } used && !used.RawData.AsSpan().SequenceEqual(current.Der))
            return WrongSigner($"The request carries a certificate that claims to be {current.SerialNumber} but is not.");
        // The renewal page opened from a reminder's link (and any client that knows which ID it means) names the certificate:
        // one person's signing and encryption IDs are both theirs, and the wrong file's key would renew the other ID and leave
        // the named one to expire unrenewed.
        if (expected is not null && !(SerialNumber.TryNormalize(current.SerialNumber, out var signedBy) && signedBy == expected))
            return Failure.Unprocessable("Signed by another certificate.",
                $"This renewal is for certificate {expected}, but the request is signed with the key of certificate {current.SerialNumber}: " +
                $"sign with the key of {expected} (the file of that digital ID). Nothing was renewed.");
        // Switched off, no renewal is made any more; one made before it was switched off is still collected by its holder's
        // repeat (a client that lost the answer), below. Said only to the holder, once the signature has proved who asks.
        if (!options.Enabled && current.RenewedBy is null)
            return Failure.Forbidden("Self-service renewal is switched off.", "Ask your administrator for an invitation to get a new digital ID.");

        var now = time.GetUtcNow();
        // A repeat of a renewal that was made (a client that lost the answer) is collected, or refused as another request,
        // below, whatever became of the renewed certificate since in the ordinary course: revoked as superseded by the
        // renewal itself (Renewal:SupersedeAfter, possibly zero) or expired (a renewal made in its last minutes). Refused
        // with the status for anything else (its key reported compromised, an administrator's revocation or hold).
        var repeat = current.RenewedBy is not null && current.RevocationReason is null or RevocationReason.Superseded;
        switch (current.StatusAt(now))
        {
            case CertificateStatus.Revoked or CertificateStatus.Expired when repeat:
                break;
            case CertificateStatus.Revoked:
                return Failure.Forbidden("Certificate revoked.", $"Certificate {current.SerialNumber} was revoked on {current.RevokedAt:u}; a revoked digital ID cannot renew itself. Ask your administrator for an invitation.");
            case CertificateStatus.OnHold:
                return Failure.Forbidden("Certificate suspended.", $"Certificate {current.SerialNumber} is on hold; it can be renewed once the hold is lifted.");
            case CertificateStatus.Expired:
                return Failure.Forbidden("Certificate expired.", $"Certificate {current.SerialNumber} expired on {current.NotAfter:u}; an expired digital ID cannot renew itself. Ask your administrator for an invitation.");
            case CertificateStatus.NotYetValid:
                return Failure.Forbidden("Certificate not yet valid.", $"Certificate {current.SerialNumber} is valid from {current.NotBefore:u}.");
        }
        if (current.SpkiSha256 is { } oldKey && await db.BlockedKeys.AsNoTracking().AnyAsync(k => k.SpkiSha256 == oldKey, ct))
            return Failure.Forbidden("Key blocked as compromised.", "The key of this certificate was reported compromised, so it proves nothing. Ask your administrator for an invitation.");
        // The signature proves the key, not the mailbox: every certificate of a chain of renewals stands on the validation made when
        // the chain was enrolled, which the S/MIME BR let a CA rely on for a bounded time (4.2.1, RenewalOptions.MaxMailboxValidationReuse).
        // Without this a chain renewed itself for ever (at once, where the window is longer than the life).
        if (!repeat && now > options.RenewableUntil(current.MailboxValidatedAt))
            return ValidationTooOld(current, options);
        var opens = current.NotAfter - options.OpensBeforeExpiry;
        if (now < opens && !repeat)
            return Failure.Unprocessable("Too early to renew.",
                $"Certificate {current.SerialNumber} expires on {current.NotAfter:u}; it can be renewed from {opens:u} ({options.OpensBeforeExpiry.TotalDays:0} days before).");
        // Near the issuing CA's end a new certificate ends with the CA, as the current one does: a renewal would spend the current
        // certificate's one renewal (and with SupersedeAfter have it revoked) for nothing.
        if (!repeat && issuer.NotAfterFor(enrollment.NotAfterAskedAt(now)) is var notAfter && notAfter <= current.NotAfter)
            return Failure.Unprocessable("Renewal would not outlive the current certificate.",
                $"The issuing CA's certificate ends on {notAfter:u}, and no certificate it issues may outlive it, so a renewal now would end " +
                $"no later than certificate {current.SerialNumber} does ({current.NotAfter:u}). Keep using that one; it can be renewed once the CA is renewed.");
        if (SigningTimeOf(signer) is not { } signedAt)
            return Failure.Unprocessable("No signing time.", "The signature must carry the signingTime attribute (openssl cms -sign adds it), so an old request cannot be replayed.");
        if ((now - signedAt).Duration() > options.MaxSignatureAge)
            return Failure.Unprocessable("Stale renewal request.",
                $"The request was signed at {signedAt:u}, more than {options.MaxSignatureAge.TotalMinutes:0} minutes from now ({now:u}): sign a fresh one.");

        if (ServerKeyRenewal.IsServerKeyRequest(cms.ContentInfo.Content))
            return await serverKeys.RenewAsync(current, cms.ContentInfo.Content, request, ct);
        var csrPem = CsrPem(cms.ContentInfo.Content);
        var inspected = CsrInspector.Inspect(csrPem, current.Email);
        if (inspected.Failure is { } csrFailure) return csrFailure;
        var key = inspected.Value!;
        var sameKey = key.SpkiSha256 == current.SpkiSha256;

        if (current.RenewedBy is { } successor) return await CollectOrRefuseAsync(current, successor, key, ct);
        if (sameKey && !options.AllowKeyReuse)
            return Failure.Unprocessable("New key required.", "A renewal needs a new key pair: make a new key and certificate request (renewing with the same key is switched off).");
        if (KeyArchive.GenerationFor(await archive.PolicyAsync(db, ct), current.Profile) == KeyGenerationPolicy.Required)
            return Failure.Unprocessable("Renewal needs a server-generated key.",
                $"Policy requires {Names.Of(current.Profile)} keys to be generated and escrowed by the server: instead of a certificate request, {ServerKeyRenewal.WhatToSign}.");

        var serial = current.SerialNumber;
        var issued = await enrollment.SignAndRecordAsync(GrantFor(current), key, ActorFor(current), prepare: null, ct);
        if (issued.Failure is { } refused) return refused;
        if (issued.Value is { } record)
        {
            logger.LogInformation("Renewed certificate {Serial} for {Email}: {NewSerial}", serial, record.Email, record.SerialNumber);
            return enrollment.Result(record);
        }
        // Renewed (or revoked) between our look and the write: a concurrent duplicate collects, anything else is refused.
        var again = await db.Certificates.AsNoTracking().FirstAsync(c => c.SerialNumber == serial, ct);
        if (again.RenewedBy is { } winner) return await CollectOrRefuseAsync(again, winner, key, ct);
        return NoLongerValid(serial);
    }

    /// <summary>The one-time permission a renewal spends: the renewed certificate's <c>RenewedBy</c>, set by a conditional
    /// update in the transaction that records its successor, while the certificate is still valid.</summary>
    internal static IssuanceGrant GrantFor(IssuedCertificate current)
    {
        var serial = current.SerialNumber;
        return new IssuanceGrant(current.Email, current.DisplayName, current.Profile, TokenId: null, RenewalOf: serial, current.MailboxValidatedAt,
            async (w, newSerial, at, wct) =>
            {
                var spent = await w.Certificates
                    .Where(c => c.SerialNumber == serial && c.RenewedBy == null && c.RevokedAt == null && c.NotAfter > at)
                    .ExecuteUpdateAsync(s => s.SetProperty(c => c.RenewedBy, newSerial), wct);
                if (spent != 1) return false;
                AuditLog.Record(w, at, ActorFor(current), AuditActions.CertificateRenewed, $"certificate:{serial}", new { renewedBy = newSerial });
                return true;
            });
    }

    internal static string ActorFor(IssuedCertificate current) => $"holder:{current.Email}";

    internal static Failure ValidationTooOld(IssuedCertificate current, RenewalOptions options) =>
        Failure.Forbidden("Mailbox validation too old to renew.",
            $"The address {current.Email} was last confirmed on {current.MailboxValidatedAt:u}, by the invitation that enrolled it, and a renewal may " +
            $"rely on that for {options.MailboxValidationReuse.TotalDays:0.##} days only (S/MIME Baseline Requirements 4.2.1). " +
            "Ask your administrator for an invitation: its link confirms the address again and gives you a new digital ID.");

    internal static Failure AlreadyRenewed(IssuedCertificate current, string successor) =>
        Failure.Conflict($"Certificate {current.SerialNumber} was already renewed (by certificate {successor}); renew that one when its time comes.");

    internal static Failure NoLongerValid(string serial) =>
        Failure.Forbidden("Certificate no longer valid.", $"Certificate {serial} was revoked or expired while it was being renewed.");

    /// <summary>A certificate is renewed once. The same request again (same new key) collects the certificate it got.</summary>
    private async Task<Outcome<EnrollmentResult>> CollectOrRefuseAsync(IssuedCertificate current, string successor, SubscriberKey key, CancellationToken ct)
    {
        var next = await db.Certificates.AsNoTracking().FirstOrDefaultAsync(c => c.SerialNumber == successor, ct);
        if (next is not null && next.SpkiSha256 == key.SpkiSha256) return enrollment.Result(next) with { Collected = true };
        return AlreadyRenewed(current, successor);
    }

    private static Failure WrongSigner(string detail) => Failure.Forbidden("Not signed by the certificate's key.", detail);

    private static SignedCms? Decode(string? text)
    {
        if (string.IsNullOrWhiteSpace(text) || text.Length > MaxCmsLength) return null;
        byte[] der;
        try
        {
            if (text.Contains("-----BEGIN", StringComparison.Ordinal))
            {
                var fields = PemEncoding.Find(text);
                var label = text[fields.Label];
                if (label is not ("CMS" or "PKCS7")) return null;
                der = Convert.FromBase64String(text[fields.Base64Data]);
            }
            else der = Convert.FromBase64String(text.Trim());
            var cms = new SignedCms();
            cms.Decode(der);
            return cms;
        }
        catch (Exception e) when (e is CryptographicException or FormatException or ArgumentException)
        {
            return null;
        }
    }

    /// <summary>Our record of the signer's certificate: by issuer and serial (what OpenSSL writes), or by subject key
    /// identifier through a certificate carried in the message (found again by its serial in our records).</summary>
    private async Task<IssuedCertificate?> FindSignerCertificateAsync(SignedCms cms, SignerInfo signer, CancellationToken ct)
    {
        string? serial;
        try
        {
            serial = signer.SignerIdentifier.Type switch
            {
                SubjectIdentifierType.IssuerAndSerialNumber when signer.SignerIdentifier.Value is X509IssuerSerial s => s.SerialNumber,
                SubjectIdentifierType.SubjectKeyIdentifier when signer.SignerIdentifier.Value is string ski => cms.Certificates
                    .FirstOrDefault(c => c.Extensions.OfType<X509SubjectKeyIdentifierExtension>().Any(e => string.Equals(e.SubjectKeyIdentifier, ski, StringComparison.OrdinalIgnoreCase)))
                    ?.SerialNumber,
                _ => null,
            };
        }
        catch (CryptographicException)
        {
            // The certificates the message carries are decoded only here (a malformed one, or a malformed key identifier
            // extension in one): the client's bytes, so no signer is found rather than a 500.
            return null;
        }
        if (serial is null || serial.Length > 64) return null;
        return await FindBySerialAsync(db, serial, ct);
    }

    /// <summary>Our record of a certificate named by a serial in hex as a client read it from the certificate.</summary>
    internal static async Task<IssuedCertificate?> FindBySerialAsync(CertPortalDbContext db, string serial, CancellationToken ct)
    {
        // DER integers may carry a leading zero byte that our hex form of the serial does not, or the other way round.
        var bare = serial.TrimStart('0');
        string[] forms = [serial.ToUpperInvariant(), bare.ToUpperInvariant(), "00" + bare.ToUpperInvariant()];
        return await db.Certificates.AsNoTracking().FirstOrDefaultAsync(c => forms.Contains(c.SerialNumber), ct);
    }

    private static DateTimeOffset? SigningTimeOf(SignerInfo signer)
    {
        foreach (var attribute in signer.SignedAttributes)
        {
            if (attribute.Oid.Value != Oids.SigningTime || attribute.Values.Count != 1) continue;
            try
            {
                var t = attribute.Values[0] as Pkcs9SigningTime ?? new Pkcs9SigningTime(attribute.Values[0].RawData);
                return new DateTimeOffset(t.SigningTime.ToUniversalTime());
            }
            catch (CryptographicException)
            {
                return null;
            }
        }
        return null;
    }

    /// <summary>The signed content as the PEM text <see cref="CsrInspector"/> reads: DER (what openssl req -outform DER
    /// and the browser sign) or PEM text.</summary>
    private static string CsrPem(byte[] content) =>
        content[0] == 0x30 ? new string(PemEncoding.Write("CERTIFICATE REQUEST", content)) : Encoding.UTF8.GetString(content);
}
