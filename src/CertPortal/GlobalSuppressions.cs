using System.Diagnostics.CodeAnalysis;

// Kept here rather than in the file so the rewrite of RevocationService under way in another branch
// merges without a conflict; that rewrite should take the CancellationToken last and drop this line.
[assembly: SuppressMessage("Design", "CA1068:CancellationToken parameters must come last",
    Justification = "ChangeAsync takes its decision callback last for readability at the call sites; being rewritten.",
    Scope = "type", Target = "~T:CertPortal.Revocation.RevocationService")]
