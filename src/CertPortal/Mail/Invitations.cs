using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Enrollment;
using Microsoft.EntityFrameworkCore;

namespace CertPortal.Mail;

public sealed record InvitationRow(string? Email, string? DisplayName, string? Profile, int? ValidHours);

/// <summary><c>Profile</c> and <c>ValidHours</c> apply to rows that do not give their own.</summary>
public sealed record BulkInvitationRequest(IReadOnlyList<InvitationRow?>? Invitations, string? Profile, int? ValidHours);

/// <summary>One row's outcome: <c>invited</c> (token created, message queued) or <c>failed</c> with the reason (also a row that
/// repeats an earlier row's mailbox and profile).</summary>
public sealed record InvitationResult(int Row, string? Email, string Status, Guid? TokenId, long? NotificationId, string? Error);

public sealed record BulkInvitationResult(int Invited, int Failed, IReadOnlyList<InvitationResult> Results);

/// <summary>Invitations: an enrollment token whose link is mailed to the person instead of shown to the admin.
/// Token, audit record and queued message commit together, so there is never a token whose invitation was lost,
/// nor an invitation for a token that does not exist. The SMTP server is not contacted here: the outbox sends.</summary>
public sealed class Invitations(EnrollmentTokens tokens, MailQueue queue, MailOutbox outbox, MailOptions mail,
    CertPortalDbContext db, Escrow.KeyArchive archive, TimeProvider time)
{
    /// <summary>Rows per bulk call; larger lists are sent in several calls (the body limit is 256 KiB anyway).</summary>
    public const int MaxRows = 1000;

    private static Failure MailOff => Failure.Unprocessable("Mail is not configured.",
        "Sending invitations needs CertPortal:Mail:Enabled and an SMTP server. Create the token without \"send\" and pass its link on yourself.");

    public async Task<Outcome<CreatedToken>> InviteAsync(CreateTokenRequest request, string actor, CancellationToken ct)
    {
        if (!mail.Enabled) return MailOff;
        var outcome = await InviteOneAsync(request, await archive.PolicyAsync(db, ct), actor, ct);
        if (outcome.Failure is { } f) return f;
        outbox.Wake();
        var (token, messageId) = outcome.Value;
        // Mailed: the secret stays out of the response (and so out of the admin's screen, proxies, logs) unless asked for.
        return (request.ShowLink ? token : token with { Token = null, EnrollmentUrl = null }) with { NotificationId = messageId };
    }

    /// <param name="beforeEach">Awaited before each row is invited; an exception it throws stops the call there (the rows
    /// before stay invited: each commits on its own).</param>
    /// <param name="withEach">Awaited in each invitation's transaction, on the writer's context, after its rows, with the new token's id:
    /// what it writes commits with the invitation, and an exception it throws rolls the invitation back and stops the call there.</param>
    /// <param name="idempotencyKey">The caller's <c>Idempotency-Key</c> (draft-ietf-httpapi-idempotency-key-header): each row invited
    /// under it is recorded in its invitation's transaction, and the same list sent again with the same key within
    /// <see cref="IdempotencyWindow"/> answers those rows as they were answered, without a second link or message, and invites
    /// the rest. A client whose connection broke half-way through a thousand rows can send the list again.</param>
    public async Task<Outcome<BulkInvitationResult>> InviteManyAsync(BulkInvitationRequest request, string actor, CancellationToken ct,
        Func<CancellationToken, Task>? beforeEach = null, Func<CertPortalDbContext, Guid, CancellationToken, Task>? withEach = null,
        string? idempotencyKey = null)
    {
        if (!mail.Enabled) return MailOff;
        if (request.Invitations is not { Count: > 0 } rows)
            return Failure.Unprocessable("No invitations.", "invitations must list at least one person: [{\"email\": ..., \"displayName\": ...}].");
        if (rows.Count > MaxRows)
            return Failure.Unprocessable("Too many invitations.", $"At most {MaxRows} invitations per call; send the rest in another call.");
        IdempotentBatch? batch = null;
        if (idempotencyKey is not null)
        {
            var opened = await IdempotentBatch.OpenAsync(db, idempotencyKey, actor, request, time.GetUtcNow(), ct);
            if (opened.Failure is { } f) return f;
            batch = opened.Value!;
        }
        await using var held = batch;

        var results = new List<InvitationResult>(rows.Count);
        var policy = await archive.PolicyAsync(db, ct);
        // A list that names someone twice (a CSV pasted twice, "Alice@" and "alice@") is a mistake, not a wish for two live links
        // and two messages: the repeat fails and names the row that invited the person. Keyed as mailboxes are compared
        // everywhere (normalised, case ignored), and by profile: the same person for another profile is another invitation.
        var invitedIn = new Dictionary<(string Email, CertificateProfileName Profile), int>();
        for (var i = 0; i < rows.Count; i++)
        {
            var row = rows[i];
            if (row is null)
            {
                results.Add(new InvitationResult(i + 1, null, "failed", null, null, "The row is empty."));
                continue;
            }
            var profileName = row.Profile ?? request.Profile;
            (string Email, CertificateProfileName Profile)? key = Mailbox.TryNormalize(row.Email, out var email, out _) && Names.TryParseProfile(profileName, out var profile)
                ? (email.ToLowerInvariant(), profile) : null;
            if (key is { } k && invitedIn.TryGetValue(k, out var first))
            {
                results.Add(new InvitationResult(i + 1, email, "failed", null, null,
                    $"{email} is invited for {Names.Of(k.Profile)} by row {first} of this list already; a person is invited once per list."));
                continue;
            }
            if (batch?.Invited(i + 1) is { } earlier)
            {
                if (key is { } doneKey) invitedIn[doneKey] = i + 1;
                results.Add(earlier);
                continue;
            }
            if (beforeEach is not null) await beforeEach(ct);
            var rowNumber = i + 1;
            var outcome = await InviteOneAsync(new CreateTokenRequest(row.Email, row.DisplayName, profileName,
                row.ValidHours ?? request.ValidHours, Send: true), policy, actor, ct, batch is null ? withEach : async (w, tokenId, wct) =>
                {
                    batch.Record(w, rowNumber, tokenId, time.GetUtcNow());
                    if (withEach is not null) await withEach(w, tokenId, wct);
                });
            if (outcome.Failure is { } f)
            {
                results.Add(new InvitationResult(i + 1, row.Email, "failed", null, null, f.Detail));
                continue;
            }
            if (key is { } invitedKey) invitedIn[invitedKey] = i + 1;
            results.Add(new InvitationResult(i + 1, outcome.Value.Token.Email, "invited", outcome.Value.Token.Id, outcome.Value.MessageId, null));
        }
        outbox.Wake();
        var invited = results.Count(r => r.Status == "invited");
        return new BulkInvitationResult(invited, results.Count - invited, results);
    }

    /// <summary>The failure's title when an <c>Idempotency-Key</c> comes with another list than it was first sent with.</summary>
    public const string KeyReusedTitle = "Idempotency-Key reused.";

    /// <summary>How long a bulk invitation's <c>Idempotency-Key</c> is remembered; the same key later starts a new list.</summary>
    public static readonly TimeSpan IdempotencyWindow = TimeSpan.FromHours(24);

    /// <param name="policy">The escrow policy: where it requires escrow for the profile, the enrollment page has the server
    /// make the key, and the message says so.</param>
    private async Task<Outcome<(CreatedToken Token, long MessageId)>> InviteOneAsync(CreateTokenRequest request, EscrowPolicyRecord policy, string actor,
        CancellationToken ct, Func<CertPortalDbContext, Guid, CancellationToken, Task>? withEach = null)
    {
        OutboundMessage? message = null;
        var created = await tokens.CreateAsync(request, actor, ct, async (w, token, wct) =>
        {
            var now = time.GetUtcNow();
            var serverKey = Names.TryParseProfile(token.Profile, out var profile) &&
                            Escrow.KeyArchive.GenerationFor(policy, profile) == KeyGenerationPolicy.Required;
            message = queue.Enqueue(w, OutboundMessageKinds.Invitation, token.Id.ToString(),
                new MessageModel(token.Email, token.DisplayName, token.Profile, ExpiresAt: token.ExpiresAt, ServerKey: serverKey ? true : null),
                mail.OrganizationName, now, token.EnrollmentUrl);
            AuditLog.Record(w, now, actor, AuditActions.InvitationQueued, $"token:{token.Id}", new { token.Email });
            if (withEach is not null) await withEach(w, token.Id, wct);
        });
        if (created.Failure is { } f) return f;
        return (created.Value!, message!.Id);
    }
}

/// <summary>A bulk invitation sent with an <c>Idempotency-Key</c>: the rows invited under the key so far, and the lock that keeps a
/// second request with the key (the client's retry while the first still runs) from inviting the same rows beside it.</summary>
internal sealed class IdempotentBatch : IAsyncDisposable
{
    private readonly byte[] _keyHash;
    private readonly byte[] _requestHash;
    private readonly HeldLock _lock;
    private readonly Dictionary<int, InvitationResult> _invited;

    private IdempotentBatch(byte[] keyHash, byte[] requestHash, HeldLock held, Dictionary<int, InvitationResult> invited) =>
        (_keyHash, _requestHash, _lock, _invited) = (keyHash, requestHash, held, invited);

    /// <summary>A key as the draft's structured-field string ("…") or bare, as most clients send one (a UUID): 1–255 visible
    /// ASCII characters.</summary>
    private static bool TryParseKey(string header, out string key)
    {
        key = header.Trim();
        if (key.Length >= 2 && key[0] == '"' && key[^1] == '"') key = key[1..^1];
        return key.Length is > 0 and <= 255 && key.All(c => c is > ' ' and <= '~');
    }

    public static async Task<Outcome<IdempotentBatch>> OpenAsync(CertPortalDbContext db, string header, string actor, BulkInvitationRequest request,
        DateTimeOffset now, CancellationToken ct)
    {
        if (!TryParseKey(header, out var key))
            return Failure.BadRequest("The Idempotency-Key header must be 1 to 255 visible ASCII characters (a random UUID, for example).");
        // The caller's own: two administrators who pick the same key have two lists.
        var keyHash = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(actor + "\n" + key));
        var requestHash = System.Security.Cryptography.SHA256.HashData(System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(request));
        // One of 4,096 stripes: a lock per key would keep an entry per key ever sent on SQLite (a process lock each). Two lists
        // with different keys on one stripe at the same moment: the later one is asked to try again.
        var held = await db.TryHoldNamedAsync($"invitation-key:{Convert.ToHexString(keyHash, 0, 2)[..3]}", ct);
        if (held is null)
            return new Failure(FailureKind.Conflict, "Request in progress.",
                "A list with this Idempotency-Key is still being invited (the first attempt goes on after its client gave up); send it again when that has finished.");
        try
        {
            var forgotten = now - Invitations.IdempotencyWindow;
            await db.InvitationBatchRows.Where(r => r.CreatedAt < forgotten).ExecuteDeleteAsync(ct);
            var stored = await db.InvitationBatchRows.AsNoTracking().Where(r => r.KeyHash == keyHash).ToListAsync(ct);
            if (stored.Any(r => !r.RequestHash.AsSpan().SequenceEqual(requestHash)))
            {
                await held.DisposeAsync();
                return Failure.Unprocessable(Invitations.KeyReusedTitle,
                    "This Idempotency-Key was sent with another list within the last 24 hours; a retry must send the same list, a new list needs a new key.");
            }
            var tokenIds = stored.Select(r => r.TokenId).ToList();
            var emails = await db.EnrollmentTokens.AsNoTracking().Where(t => tokenIds.Contains(t.Id)).ToDictionaryAsync(t => t.Id, t => t.Email, ct);
            var dedupeKeys = tokenIds.Select(id => id.ToString()).ToList();
            var messages = await db.OutboundMessages.AsNoTracking()
                .Where(m => m.Kind == OutboundMessageKinds.Invitation && dedupeKeys.Contains(m.DedupeKey))
                .ToDictionaryAsync(m => m.DedupeKey, m => m.Id, ct);
            var invited = stored.ToDictionary(r => r.Row, r => new InvitationResult(r.Row, emails.GetValueOrDefault(r.TokenId), "invited", r.TokenId,
                messages.TryGetValue(r.TokenId.ToString(), out var messageId) ? messageId : null, null));
            return new IdempotentBatch(keyHash, requestHash, held, invited);
        }
        catch
        {
            await held.DisposeAsync();
            throw;
        }
    }

    /// <summary>The answer a row got under this key before, or null when it was not invited.</summary>
    public InvitationResult? Invited(int row) => _invited.GetValueOrDefault(row);

    /// <summary>In the row's invitation transaction.</summary>
    public void Record(CertPortalDbContext w, int row, Guid tokenId, DateTimeOffset now) =>
        w.InvitationBatchRows.Add(new InvitationBatchRow { KeyHash = _keyHash, Row = row, RequestHash = _requestHash, TokenId = tokenId, CreatedAt = now });

    public ValueTask DisposeAsync() => _lock.DisposeAsync();
}
