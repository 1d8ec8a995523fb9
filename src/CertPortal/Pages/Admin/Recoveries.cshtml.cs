using CertPortal.Escrow;
using CertPortal.Security;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc.RazorPages;

namespace CertPortal.Pages.Admin;

/// <summary>Recovery requests for administrators, auditors and key recovery agents (the agents'
/// only page). Agents decrypt their share on their own machine with certportal-kra.</summary>
[Authorize(Policy = Policies.RecoveryParticipant)]
public sealed class RecoveriesModel(KeyRecovery recovery) : PageModel
{
    public IReadOnlyList<RecoveryView> Requests { get; private set; } = [];
    public EscrowPolicyView? Policy { get; private set; }

    public async Task OnGetAsync(CancellationToken ct)
    {
        Requests = await recovery.ListAsync(ct);
        Policy = await recovery.PolicyAsync(ct);
    }
}
