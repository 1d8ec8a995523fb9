using System.DirectoryServices.Protocols;
using System.Globalization;

namespace CertPortal.Gal;

/// <summary>Base of all failures raised by <see cref="LdapDirectory"/>.</summary>
public abstract class DirectoryException : Exception
{
    protected DirectoryException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>
/// The directory could not be used at all: server down or unreachable, timeout, TLS failure,
/// bind rejected, or the server said busy/unavailable. Nothing was (knowingly) changed; a caller
/// with a retry queue should retry later. <see cref="LdapErrorCode"/> is the libldap/LDAP code
/// (81 server down, 85 timeout, 91 connect error, 49 invalid credentials, 51 busy, 52 unavailable), or null.
/// </summary>
public sealed class DirectoryUnavailableException : DirectoryException
{
    public DirectoryUnavailableException(string message, int? ldapErrorCode, Exception? inner = null)
        : base(message, inner) => LdapErrorCode = ldapErrorCode;

    public int? LdapErrorCode { get; }
}

/// <summary>
/// The server processed a request and refused it (schema violation, insufficient access, invalid syntax, ...).
/// Retrying the same request will usually fail the same way; <see cref="ResultCode"/> says why.
/// </summary>
public class DirectoryOperationFailedException : DirectoryException
{
    public DirectoryOperationFailedException(string operation, string dn, ResultCode resultCode, string? serverMessage, Exception? inner = null)
        : base($"LDAP {operation} on '{dn}' failed: {(int)resultCode} {resultCode}" +
               (string.IsNullOrWhiteSpace(serverMessage) ? "" : $" ({serverMessage.Trim()})"), inner)
    {
        Operation = operation;
        Dn = dn;
        ResultCode = resultCode;
        ServerMessage = serverMessage;
    }

    public string Operation { get; }
    public string Dn { get; }
    public ResultCode ResultCode { get; }
    public string? ServerMessage { get; }
}

/// <summary>
/// The directory closed the connection on a write request but took a new connection at once: it refuses that request for
/// what it carries (slapd closes the connection on a request larger than sockbuf_max_incoming_auth, e.g. a large CRL), and
/// sending it again fails the same way. The publication's own failure, not an outage.
/// </summary>
public sealed class DirectoryRequestRefusedException : DirectoryException
{
    public DirectoryRequestRefusedException(string operation, string dn, int ldapErrorCode, long valueBytes, Exception? inner = null)
        : base(string.Create(CultureInfo.InvariantCulture,
            $"LDAP {operation} on '{dn}' failed: {ldapErrorCode} connection closed by the directory on this request ({valueBytes} bytes of values), though it accepted a new connection at once: it refuses the request itself, most likely as too large (slapd: sockbuf_max_incoming_auth, 4 MiB by default)"),
            inner) => LdapErrorCode = ldapErrorCode;

    public int LdapErrorCode { get; }
}

/// <summary>
/// No person entry has the mail address, and we may not create one (ActiveDirectory mode, or
/// CreateMissingEntries = false). A data problem to report to an operator, not to retry blindly.
/// </summary>
public sealed class DirectoryEntryNotFoundException : DirectoryException
{
    public DirectoryEntryNotFoundException(string mail, string baseDn)
        : base($"No directory entry with mail '{mail}' under '{baseDn}', and creating entries is disabled.")
    {
        Mail = mail;
        BaseDn = baseDn;
    }

    public string Mail { get; }
    public string BaseDn { get; }
}

/// <summary>
/// More than one person entry has the mail address; we do not guess which one gets the certificate.
/// </summary>
public sealed class DirectoryEntryAmbiguousException : DirectoryException
{
    public DirectoryEntryAmbiguousException(string mail, IReadOnlyList<string> dns)
        : base($"{dns.Count} directory entries have mail '{mail}': {string.Join("; ", dns)}")
    {
        Mail = mail;
        Dns = dns;
    }

    public string Mail { get; }
    public IReadOnlyList<string> Dns { get; }
}

/// <summary>
/// The outbox lease on the entry being written is no longer certainly this node's for the length of one more operation
/// (another node took it over, or renewing it failed for too long), so the write was not sent. Nothing was changed by it;
/// whoever holds the entry now reconciles it.
/// </summary>
public sealed class DirectoryClaimLostException : DirectoryException
{
    public DirectoryClaimLostException(string entry)
        : base($"Stopped before writing '{entry}': this node's claim on the outbox entry ended or could not be renewed") { }
}

/// <summary>
/// Another node holds the outbox lease of the person entry being reconciled, through another of the entry's mail values
/// (aliases). Nothing was written; this node's rows went back to the queue, for when that node is done.
/// </summary>
public sealed class DirectoryEntryHeldElsewhereException : DirectoryException
{
    public DirectoryEntryHeldElsewhereException(string entry)
        : base($"Left '{entry}' alone: another node is reconciling the same directory entry through another of its mail values") { }
}
