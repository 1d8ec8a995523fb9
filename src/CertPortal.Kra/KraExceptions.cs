namespace CertPortal.Kra;

/// <summary>An expected failure (bad password, wrong key, unreadable file). Exit code 1; the message is printed as is.</summary>
public sealed class KraException : Exception
{
    public KraException(string message) : base(message) { }

    public KraException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>Bad command line. Exit code 2.</summary>
public sealed class KraUsageException : Exception
{
    public KraUsageException(string message) : base(message) { }
}
