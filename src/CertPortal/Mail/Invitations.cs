using CertPortal.Auditing;
using CertPortal.Authority;
using CertPortal.Data;
using CertPortal.Enrollment;

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
    public async Task<Outcome<BulkInvitationResult>> InviteManyAsync(BulkInvitationRequest request, string actor, CancellationToken ct,
        Func<CancellationToken, Task>? beforeEach = null, Func<CertPortalDbContext, Guid, CancellationToken, Task>? withEach = null)
    {
        if (!mail.Enabled) return MailOff;
        if (request.Invitations is not { Count: > 0 } rows)
            return Failure.Unprocessable("No invitations.", "invitations must list at least one person: [{\"email\": ..., \"displayName\": ...}].");
        if (rows.Count > MaxRows)
            return Failure.Unprocessable("Too many invitations.", $"At most {MaxRows} invitations per call; send the rest in another call.");

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
            if (beforeEach is not null) await beforeEach(ct);
            var outcome = await InviteOneAsync(new CreateTokenRequest(row.Email, row.DisplayName, profileName,
                row.ValidHours ?? request.ValidHours, Send: true), policy, actor, ct, withEach);
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
