namespace CertPortal.Kra;

/// <summary>
/// Reads a password from a file or from stdin ("-"); never from argv, where other local users
/// can read it (/proc/PID/cmdline) and shells record it in history.
/// Like OpenSSL's <c>-passin file:</c>, only the first line counts, without its line ending.
/// </summary>
public static class PasswordSource
{
    public const string StdinMarker = "-";

    public static string Read(string pathOrDash, TextReader? stdin = null)
    {
        string? line;
        if (pathOrDash == StdinMarker)
        {
            line = (stdin ?? Console.In).ReadLine();
        }
        else
        {
            try
            {
                using var reader = new StreamReader(pathOrDash);
                line = reader.ReadLine();
            }
            catch (IOException ex)
            {
                throw new KraException($"Cannot read password file {pathOrDash}: {ex.Message}", ex);
            }
            catch (UnauthorizedAccessException ex)
            {
                throw new KraException($"Cannot read password file {pathOrDash}: access denied.", ex);
            }
        }
        if (string.IsNullOrEmpty(line))
            throw new KraException("The password is empty.");
        return line;
    }
}
