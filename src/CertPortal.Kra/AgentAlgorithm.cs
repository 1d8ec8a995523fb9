namespace CertPortal.Kra;

/// <summary>Key types an agent may choose; they match what the server accepts (RSA >= 2048, EC P-256/P-384).</summary>
public enum AgentAlgorithm
{
    Rsa3072,
    Rsa4096,
    EcP256,
    EcP384,
}

public static class AgentAlgorithmNames
{
    public const string Supported = "RSA-3072, RSA-4096, EC-P256, EC-P384";

    public static AgentAlgorithm Parse(string name) => name.ToUpperInvariant() switch
    {
        "RSA-3072" => AgentAlgorithm.Rsa3072,
        "RSA-4096" => AgentAlgorithm.Rsa4096,
        "EC-P256" => AgentAlgorithm.EcP256,
        "EC-P384" => AgentAlgorithm.EcP384,
        _ => throw new KraUsageException($"Unknown algorithm \"{name}\"; use one of {Supported}."),
    };
}
