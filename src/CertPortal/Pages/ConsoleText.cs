namespace CertPortal.Pages;

/// <summary>The console's words for what the API names in camelCase: people read "On hold", not "onHold".</summary>
public static class ConsoleText
{
    public static string Status(string? status) => status switch
    {
        "valid" => "Valid",
        "revoked" => "Revoked",
        "onHold" => "On hold",
        "expired" => "Expired",
        "notYetValid" => "Not yet valid",
        "pending" => "Waiting to be used",
        "used" => "Used",
        _ => status ?? "",
    };

    /// <summary>RFC 5280 reason names (the API's values) in words.</summary>
    public static string Reason(string? reason) => reason switch
    {
        "keyCompromise" => "Key compromised (lost or stolen)",
        "cACompromise" => "CA compromised",
        "affiliationChanged" => "Affiliation changed (left the organisation, new name)",
        "superseded" => "Superseded (replaced by a new certificate)",
        "cessationOfOperation" => "No longer needed",
        "certificateHold" => "Hold (suspend until released)",
        "privilegeWithdrawn" => "Privilege withdrawn",
        "unspecified" => "No reason given",
        _ => reason ?? "",
    };

    public static string Profile(string? profile) => profile switch
    {
        "signing" => "Signing",
        "encryption" => "Encryption",
        "dual" => "Signing and encryption",
        _ => profile ?? "",
    };

    /// <summary>"1 certificate", "2 certificates", "no certificates".</summary>
    public static string Count(int n, string singular, string? plural = null) =>
        n == 0 ? $"no {plural ?? singular + "s"}" : n == 1 ? $"1 {singular}" : $"{n} {plural ?? singular + "s"}";
}
