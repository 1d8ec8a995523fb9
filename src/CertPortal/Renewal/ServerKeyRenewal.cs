using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Escrow;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Renewal;

/// <summary>Renewal of an ID whose key the server generates and escrows (policy <c>Required</c> or <c>Allowed</c> for its
/// profile): the holder signs <c>{"keyAlgorithm":"RSA-3072","requestIdAndPasswordSha256":"…"}</c> with the current key
/// instead of a certificate request, and the server generates, escrows and packs the new key exactly as token enrollment
/// with a server key does (<see cref="ServerKeyEnrollment"/>), spending the renewed certificate instead of a token.
/// <see cref="RenewalService"/> has checked the signature, the certificate's state and the signing time before this runs.</summary>
/// <remarks>The signature must name the request it authorises. A CSR signed by the old key is harmless in other hands (it
/// certifies the holder's own new key), but here whoever sends the signed content first gets the new private key, under the
/// password sent beside it: a copy of a fresh signed request (a renew.p7 left in a shared folder, a body a proxy logged in
/// part) sent with another requestId and password took the key. So the signed content commits to both, as RFC 7030's
/// server-side key generation has the signed request name the key the returned private key is encrypted to (4.4.1.1):
/// SHA-256 over requestId, a zero byte and the password. The requestId is a random secret of at least 128 bits that the
/// server keeps nowhere (<see cref="RetryPackage"/>), so the commitment neither reveals it nor lets the password be guessed
/// from the message alone, which naming the requestId in clear, or hashing the password alone, would.</remarks>
public sealed class ServerKeyRenewal(
    CertPortalDbContext db, EnrollmentService enrollment, ServerKeyEnrollment serverKeys, KeyArchive archive, ILogger<ServerKeyRenewal> logger)
{
    public const string BindingField = "requestIdAndPasswordSha256";

    private const string ExampleContent = """{"keyAlgorithm":"RSA-3072","requestIdAndPasswordSha256":"…"}""";

    /// <summary>What to sign, in words: every refusal that names the signed content says it the same way.</summary>
    public const string WhatToSign = "sign " + ExampleContent + " where " + BindingField +
        """ is the SHA-256, in hex, of the requestId, a zero byte and the pkcs12Password (UTF-8: printf '%s\0%s' "$id" "$pw" | sha256sum), """ +
        "and send that requestId (a random value, e.g. a UUID) and pkcs12Password with it";

    /// <summary>Whether the renewal page lets the server make the new key: always where policy requires it, and where
    /// policy merely allows it, for an ID whose key is escrowed already (an escrowed ID stays escrowed).</summary>
    public async Task<bool> RenewsWithServerKeyAsync(IssuedCertificate current, CancellationToken ct)
    {
        var generation = KeyArchive.GenerationFor(await archive.PolicyAsync(db, ct), current.Profile);
        return RenewsWithServerKey(generation,
            generation == KeyGenerationPolicy.Allowed && await db.KeyEscrows.AsNoTracking().AnyAsync(e => e.SerialNumber == current.SerialNumber, ct));
    }

    /// <summary>The same decision from the policy for the ID's profile and whether its key is escrowed (the expiry
    /// reminder says which way the renewal page will go).</summary>
    public static bool RenewsWithServerKey(KeyGenerationPolicy generation, bool escrowed) =>
        generation == KeyGenerationPolicy.Required || (generation == KeyGenerationPolicy.Allowed && escrowed);

    /// <summary>A JSON object rather than a PKCS#10 request (which is DER, or PEM text starting with a dash).</summary>
    public static bool IsServerKeyRequest(byte[] content)
    {
        foreach (var b in content)
        {
            if (b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n') continue;
            return b == (byte)'{';
        }
        return false;
    }

    internal async Task<Outcome<EnrollmentResult>> RenewAsync(IssuedCertificate current, byte[] content, RenewalRequest request, CancellationToken ct)
    {
        if (SignedFields(content) is not ({ } keyAlgorithm, var signedBinding))
            return Failure.Unprocessable("Unreadable server-key renewal request.",
                $"The signed content must be a JSON object naming the key type the server generates and the request: {WhatToSign}.");
        var checkedParameters = ServerKeyParameters.Check(keyAlgorithm, request.Pkcs12Password, request.Pkcs12Format, request.RequestId);
        if (checkedParameters.Failure is { } invalid) return invalid;
        var parameters = checkedParameters.Value!;
        if (signedBinding is null)
            return Failure.Unprocessable("The signature must name its request.",
                $"The signed content names the key type only, so anyone holding a copy could send it with a password of their own and take the new key: {WhatToSign}.");
        if (parameters.RequestId is not { } requestId)
            return Failure.Unprocessable("requestId required.", $"A renewal with a key made by the server needs a requestId, named in what is signed: {WhatToSign}.");
        if (!SignatureCovers(signedBinding, requestId, parameters.Pkcs12Password))
            return Failure.Forbidden("Not signed for this request.",
                $"The signature names another requestId or pkcs12Password than this request sends ({BindingField} does not match): {WhatToSign}.");

        if (current.RenewedBy is { } successor) return await CollectOrRefuseAsync(current, successor, parameters, ct);
        var terms = await serverKeys.EscrowTermsAsync(current.Profile, ct);
        if (terms.Failure is { } notNow) return notNow;

        var actor = RenewalService.ActorFor(current);
        var (issued, pfx) = await serverKeys.IssueWithGeneratedKeyAsync(parameters, current.Email, current.DisplayName, current.Profile, terms.Value!, actor,
            keepForRetry: (escrow, handedOut) =>
            {
                // On the escrow row itself: it commits with the certificate, and a renewal has no token to keep it on.
                if (parameters.RequestId is { } id)
                    escrow.RetryPackage = RetryPackage.Seal(handedOut, id, RetryPackage.RenewalBinding(escrow.SerialNumber));
                return null;
            },
            issue: (key, prepare) => enrollment.SignAndRecordAsync(RenewalService.GrantFor(current), key, actor, prepare, ct));
        if (issued.Failure is { } refused) return refused;
        if (issued.Value is { } record)
        {
            logger.LogInformation("Renewed certificate {Serial} for {Email} with a server-generated, escrowed key: {NewSerial}",
                current.SerialNumber, record.Email, record.SerialNumber);
            return enrollment.Result(record) with { Pkcs12 = Convert.ToBase64String(pfx!), KeyEscrowed = true };
        }
        // Renewed (or revoked) between our look and the write: a concurrent duplicate collects, anything else is refused.
        var again = await db.Certificates.AsNoTracking().FirstAsync(c => c.SerialNumber == current.SerialNumber, ct);
        if (again.RenewedBy is { } winner) return await CollectOrRefuseAsync(again, winner, parameters, ct);
        return RenewalService.NoLongerValid(current.SerialNumber);
    }

    /// <summary>A certificate is renewed once. The same request again (same requestId, which opens the sealed copy, and
    /// same password, which opens the PKCS#12: its MAC, a salted and iterated verifier the server keeps inside the sealed copy
    /// instead of the password, and the same key type and format) collects the PKCS#12 it was given, under the password of the
    /// first request; anything else is refused as already renewed (409), the same requestId with other parameters saying so.
    /// The signature has named this requestId and password (<see cref="SignatureCovers"/>) before this runs.</summary>
    private async Task<Outcome<EnrollmentResult>> CollectOrRefuseAsync(IssuedCertificate current, string successor, ServerKeyParameters parameters,
        CancellationToken ct)
    {
        if (parameters.RequestId is { } requestId)
        {
            var packages = await db.KeyEscrows.AsNoTracking().Where(e => e.SerialNumber == successor && e.RetryPackage != null)
                .Select(e => e.RetryPackage!).ToListAsync(ct);
            var binding = RetryPackage.RenewalBinding(successor);
            foreach (var package in packages)
            {
                if (RetryPackage.Open(package, requestId, binding) is not { } pfx) continue;
                var next = await db.Certificates.AsNoTracking().FirstAsync(c => c.SerialNumber == successor, ct);
                if (parameters.OtherThanFirst(pfx, next.KeyAlgorithm, FailureKind.Conflict) is { } reused) return reused;
                return enrollment.Result(next) with { Pkcs12 = Convert.ToBase64String(pfx), KeyEscrowed = true, Collected = true };
            }
        }
        return RenewalService.AlreadyRenewed(current, successor);
    }

    /// <summary>Whether the signed binding is SHA-256(requestId ‖ 0x00 ‖ password), compared in constant time. Neither a requestId
    /// (printable ASCII, <see cref="RetryPackage.IsValidRequestId"/>) nor a password (no control characters) holds a zero byte,
    /// so the pair is read back one way only.</summary>
    internal static bool SignatureCovers(string signedBinding, string requestId, string password)
    {
        if (signedBinding.Length != 2 * SHA256.HashSizeInBytes || !signedBinding.All(Uri.IsHexDigit)) return false;
        var input = Encoding.UTF8.GetBytes(requestId + "\0" + password);
        try
        {
            return CryptographicOperations.FixedTimeEquals(SHA256.HashData(input), Convert.FromHexString(signedBinding));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(input);
        }
    }

    /// <summary>The key type and the request binding (null when the content has none) the holder signed; null when the content is
    /// not a JSON object with a string keyAlgorithm.</summary>
    private static (string KeyAlgorithm, string? Binding)? SignedFields(byte[] content)
    {
        try
        {
            using var json = JsonDocument.Parse(content, new JsonDocumentOptions { MaxDepth = 4 });
            var root = json.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("keyAlgorithm", out var algorithm) || algorithm.ValueKind != JsonValueKind.String)
                return null;
            var binding = root.TryGetProperty(BindingField, out var b) && b.ValueKind == JsonValueKind.String ? b.GetString() : null;
            return (algorithm.GetString()!, binding);
        }
        // GetString throws InvalidOperationException for a string JSON allows but UTF-16 cannot hold (a lone surrogate escape).
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            return null;
        }
    }
}
