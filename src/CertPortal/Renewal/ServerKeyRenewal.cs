using System.Text.Json;
using CertPortal.Data;
using CertPortal.Enrollment;
using CertPortal.Escrow;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Renewal;

/// <summary>Renewal of an ID whose key the server generates and escrows (policy <c>Required</c> or <c>Allowed</c> for its
/// profile): the holder signs <c>{"keyAlgorithm":"RSA-3072"}</c> with the current key instead of a certificate request,
/// and the server generates, escrows and packs the new key exactly as token enrollment with a server key does
/// (<see cref="ServerKeyEnrollment"/>), spending the renewed certificate instead of a token. <see cref="RenewalService"/>
/// has checked the signature, the certificate's state and the signing time before this runs.</summary>
public sealed class ServerKeyRenewal(
    CertPortalDbContext db, EnrollmentService enrollment, ServerKeyEnrollment serverKeys, KeyArchive archive, ILogger<ServerKeyRenewal> logger)
{
    public const string ExampleContent = """{"keyAlgorithm":"RSA-3072"}""";

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
        if (KeyAlgorithmIn(content) is not { } keyAlgorithm)
            return Failure.Unprocessable("Unreadable server-key renewal request.",
                $"The signed content must be a JSON object naming the key type the server generates, e.g. {ExampleContent}.");
        var checkedParameters = ServerKeyParameters.Check(keyAlgorithm, request.Pkcs12Password, request.Pkcs12Format, request.RequestId);
        if (checkedParameters.Failure is { } invalid) return invalid;
        var parameters = checkedParameters.Value!;

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
    /// same password, which opens the PKCS#12) collects the PKCS#12 it was given; anything else is refused.</summary>
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
                if (RetryPackage.Open(package, requestId, binding) is not { } pfx || !Pkcs12Files.PasswordOpens(pfx, parameters.Pkcs12Password)) continue;
                var next = await db.Certificates.AsNoTracking().FirstAsync(c => c.SerialNumber == successor, ct);
                return enrollment.Result(next) with { Pkcs12 = Convert.ToBase64String(pfx), KeyEscrowed = true, Collected = true };
            }
        }
        return RenewalService.AlreadyRenewed(current, successor);
    }

    private static string? KeyAlgorithmIn(byte[] content)
    {
        try
        {
            using var json = JsonDocument.Parse(content, new JsonDocumentOptions { MaxDepth = 4 });
            return json.RootElement.ValueKind == JsonValueKind.Object &&
                   json.RootElement.TryGetProperty("keyAlgorithm", out var value) && value.ValueKind == JsonValueKind.String
                ? value.GetString()
                : null;
        }
        // GetString throws InvalidOperationException for a string JSON allows but UTF-16 cannot hold (a lone surrogate escape).
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            return null;
        }
    }
}
