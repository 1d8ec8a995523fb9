using System.Text;
using CertPortal.Auditing;
using CertPortal.Escrow;
using CertPortal.Security;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace CertPortal.Pages.Admin;

/// <summary>Recovery requests for administrators, auditors and key recovery agents (the agents' only page).
/// Administrators open, cancel and export; agents download their encrypted share, decrypt it on their own
/// machine with certportal-kra (their private key never reaches the server), which seals it to the request, and paste the result back.
/// Every action goes through <see cref="KeyRecovery"/>, exactly as the API does.</summary>
[Authorize(Policy = Policies.RecoveryParticipant)]
public sealed class RecoveriesModel(KeyRecovery recovery, EscrowPolicyEditor policy) : PageModel
{
    public IReadOnlyList<RecoveryView> Requests { get; private set; } = [];
    public EscrowPolicyView? Policy { get; private set; }
    public string? Error { get; private set; }
    public string? Message { get; private set; }

    public bool IsAdministrator => User.IsInRole(Roles.Administrator);
    public bool IsAgent => User.IsInRole(Roles.RecoveryAgent);

    public Task OnGetAsync(CancellationToken ct) => LoadAsync(ct);

    public async Task<IActionResult> OnPostOpenAsync(string? serial, string? reason, string? purpose, CancellationToken ct)
    {
        if (!IsAdministrator) return Forbid();
        var o = await recovery.OpenAsync(new OpenRecoveryRequest(serial, reason, purpose), AuditLog.ActorOf(User), ct);
        if (o.Failure is { } f) Error = f.Detail;
        else Message = $"Recovery request {o.Value!.Id} is open. It needs {o.Value.Threshold} agent approvals.";
        await LoadAsync(ct);
        return Page();
    }

    public async Task<IActionResult> OnPostCancelAsync(Guid id, CancellationToken ct)
    {
        if (!IsAdministrator) return Forbid();
        var o = await recovery.CancelAsync(id, new CancelRecoveryRequest("cancelled in the console"), AuditLog.ActorOf(User), ct);
        if (o.Failure is { } f) Error = f.Detail; else Message = $"Request {id} is cancelled; submitted shares are erased.";
        await LoadAsync(ct);
        return Page();
    }

    /// <summary>The recovered key as a download, once. The password protects the file; it is not kept.</summary>
    public async Task<IActionResult> OnPostExportAsync(Guid id, string? password, CancellationToken ct)
    {
        if (!IsAdministrator) return Forbid();
        var o = await recovery.ExportAsync(id, new RecoveredKeyRequest(password, null), AuditLog.ActorOf(User), ct);
        if (o.Failure is { } f)
        {
            Error = f.Detail;
            await LoadAsync(ct);
            return Page();
        }
        return File(Convert.FromBase64String(o.Value!.Pkcs12), "application/x-pkcs12", $"recovered-{o.Value.SerialNumber}.p12");
    }

    /// <summary>The signed-in agent's encrypted share (CMS, PEM) for the agent to decrypt with certportal-kra.</summary>
    public async Task<IActionResult> OnGetShareAsync(Guid id, CancellationToken ct)
    {
        if (!IsAgent) return Forbid();
        var o = await recovery.ShareForAgentAsync(id, Accounts.IdOf(User) ?? Guid.Empty, AuditLog.ActorOf(User), ct);
        if (o.Failure is { } f)
        {
            Error = f.Detail;
            await LoadAsync(ct);
            return Page();
        }
        // One file with both blocks, so `certportal-kra decrypt-share --share` finds the request's certificate to seal to.
        return File(Encoding.ASCII.GetBytes(o.Value!.EncryptedSharePem + o.Value.SubmissionCertificatePem), "application/x-pem-file", $"share-{id}.pem");
    }

    public async Task<IActionResult> OnPostApproveAsync(Guid id, string? share, CancellationToken ct)
    {
        if (!IsAgent) return Forbid();
        // What certportal-kra printed: a sealed share, or from an old CLI a plaintext one (refused unless AcceptPlaintextShares).
        var submission = SealedShare.IsSealed(share ?? "") ? new SubmitShareRequest(null, share) : new SubmitShareRequest(share);
        var o = await recovery.ApproveAsync(id, Accounts.IdOf(User) ?? Guid.Empty, submission, AuditLog.ActorOf(User), ct);
        if (o.Failure is { } f) Error = f.Detail;
        else Message = $"Your approval is recorded: {o.Value!.Approvals} of {o.Value.Threshold}.";
        await LoadAsync(ct);
        return Page();
    }

    private async Task LoadAsync(CancellationToken ct)
    {
        Requests = await recovery.ListAsync(ct);
        Policy = await policy.GetAsync(ct);
    }
}
