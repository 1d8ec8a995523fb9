using System.Formats.Asn1;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace CertPortal.Tests.Infrastructure;

/// <summary>A minimal LDAPv3 server that answers as Active Directory does for one large group: its member values a range at a
/// time ([MS-ADTS] 3.1.1.3.1.3.3, MaxValRange). No Debian package can do this (slapd has no ranged retrieval, and AD does not
/// run here), so this stand-in speaks just enough of RFC 4511 for <c>LdapDirectory.ListPeopleWithMailAsync</c> through the real
/// libldap: a simple bind, base searches of the group, one subtree search of the people (one page: no paged-results control
/// in the answer, which a client reads as the last page), unbind.</summary>
public sealed class RangedLdapServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;
    private readonly List<string> _requests = [];

    /// <param name="groupDn">The group; its members are <paramref name="members"/>, in order.</param>
    /// <param name="people">Every person entry (DN, mail) a subtree search returns.</param>
    /// <param name="maxValRange">How many values one answer holds (AD's default is 1500).</param>
    /// <param name="lastRangeServed">Answers no range starting after this value (a server that stops handing out ranges).</param>
    public RangedLdapServer(string groupDn, IReadOnlyList<string> members, IReadOnlyList<(string Dn, string Mail)> people, int maxValRange,
        int lastRangeServed = int.MaxValue)
    {
        GroupDn = groupDn;
        Members = members;
        People = people;
        MaxValRange = maxValRange;
        LastRangeServed = lastRangeServed;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public string GroupDn { get; }
    public IReadOnlyList<string> Members { get; }
    public IReadOnlyList<(string Dn, string Mail)> People { get; }
    public int MaxValRange { get; }
    public int LastRangeServed { get; }
    public string Url => $"ldap://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

    /// <summary>The attribute lists of the group searches, in order (e.g. "member,uniqueMember", "member;range=1500-*").</summary>
    public IReadOnlyList<string> GroupRequests { get { lock (_requests) return [.. _requests]; } }

    private async Task AcceptAsync()
    {
        var sessions = new List<Task>();
        try
        {
            while (true) sessions.Add(ServeAsync(await _listener.AcceptTcpClientAsync(_stop.Token)));
        }
        catch (OperationCanceledException) { }
        catch (ObjectDisposedException) { }
        await Task.WhenAll(sessions);
    }

    private async Task ServeAsync(TcpClient client)
    {
        using var _ = client;
        var stream = client.GetStream();
        try
        {
            while (await ReadMessageAsync(stream, _stop.Token) is { } message)
            {
                var reader = new AsnReader(message, AsnEncodingRules.BER).ReadSequence();
                var id = (int)reader.ReadInteger();
                var op = reader.PeekTag();
                if (op.TagClass != TagClass.Application) return;
                switch (op.TagValue)
                {
                    case 0: // BindRequest
                        await WriteAsync(stream, Result(id, 1));
                        break;
                    case 2: // UnbindRequest
                        return;
                    case 3: // SearchRequest
                        foreach (var answer in Search(id, reader.ReadSequence(op))) await WriteAsync(stream, answer);
                        break;
                    default:
                        return;
                }
            }
        }
        catch (IOException) { }
        catch (OperationCanceledException) { }
    }

    private IEnumerable<byte[]> Search(int id, AsnReader search)
    {
        var baseDn = Encoding.UTF8.GetString(search.ReadOctetString());
        var scope = search.ReadEnumeratedValue<SearchScope>();
        search.ReadEncodedValue(); // derefAliases
        search.ReadInteger(); // sizeLimit
        search.ReadInteger(); // timeLimit
        search.ReadBoolean(); // typesOnly
        search.ReadEncodedValue(); // filter: answered by DN and scope alone
        var attributes = new List<string>();
        var list = search.ReadSequence();
        while (list.HasData) attributes.Add(Encoding.UTF8.GetString(list.ReadOctetString()));

        if (scope == SearchScope.Base && baseDn.Equals(GroupDn, StringComparison.OrdinalIgnoreCase))
        {
            lock (_requests) _requests.Add(string.Join(',', attributes));
            if (GroupAttribute(attributes) is { } member) yield return Entry(id, GroupDn, [member]);
            else yield return Entry(id, GroupDn, []);
        }
        else if (scope == SearchScope.Subtree)
        {
            foreach (var (dn, mail) in People) yield return Entry(id, dn, [("mail", [mail]), ("cn", [mail.Split('@')[0]])]);
        }
        yield return Result(id, 5);
    }

    /// <summary>AD's answer: "member" for the whole attribute when it fits, else the first range; "member;range=L-*" from L on.</summary>
    private (string, IReadOnlyList<string>)? GroupAttribute(List<string> requested)
    {
        int low;
        var ranged = requested.FirstOrDefault(a => a.StartsWith("member;range=", StringComparison.OrdinalIgnoreCase));
        if (ranged is not null)
        {
            var bounds = ranged["member;range=".Length..].Split('-');
            low = int.Parse(bounds[0], System.Globalization.CultureInfo.InvariantCulture);
            if (low > LastRangeServed || low >= Members.Count) return null;
        }
        else if (requested.Any(a => a.Equals("member", StringComparison.OrdinalIgnoreCase)))
        {
            if (Members.Count <= MaxValRange) return ("member", Members);
            low = 0;
        }
        else return null;
        var high = Math.Min(low + MaxValRange, Members.Count) - 1;
        var last = high == Members.Count - 1;
        return ($"member;range={low}-{(last ? "*" : high.ToString(System.Globalization.CultureInfo.InvariantCulture))}",
            Members.Skip(low).Take(high - low + 1).ToList());
    }

    private static byte[] Entry(int id, string dn, IEnumerable<(string Type, IReadOnlyList<string> Values)> attributes)
    {
        var w = new AsnWriter(AsnEncodingRules.BER);
        using (w.PushSequence())
        {
            w.WriteInteger(id);
            using (w.PushSequence(new Asn1Tag(TagClass.Application, 4, isConstructed: true)))
            {
                w.WriteOctetString(Encoding.UTF8.GetBytes(dn));
                using (w.PushSequence())
                {
                    foreach (var (type, values) in attributes)
                    {
                        using (w.PushSequence())
                        {
                            w.WriteOctetString(Encoding.UTF8.GetBytes(type));
                            using (w.PushSetOf())
                            {
                                foreach (var v in values) w.WriteOctetString(Encoding.UTF8.GetBytes(v));
                            }
                        }
                    }
                }
            }
        }
        return w.Encode();
    }

    /// <summary>An LDAPResult with success: tag 1 BindResponse, 5 SearchResultDone.</summary>
    private static byte[] Result(int id, int tag)
    {
        var w = new AsnWriter(AsnEncodingRules.BER);
        using (w.PushSequence())
        {
            w.WriteInteger(id);
            using (w.PushSequence(new Asn1Tag(TagClass.Application, tag, isConstructed: true)))
            {
                w.WriteEnumeratedValue(ResultCodeSuccess.Success);
                w.WriteOctetString([]);
                w.WriteOctetString([]);
            }
        }
        return w.Encode();
    }

    private enum ResultCodeSuccess { Success = 0 }

    private enum SearchScope { Base = 0, OneLevel = 1, Subtree = 2 }

    private static async Task WriteAsync(NetworkStream stream, byte[] message) => await stream.WriteAsync(message);

    /// <summary>One BER-encoded LDAPMessage (definite length, as libldap sends), or null at the end of the stream.</summary>
    private static async Task<byte[]?> ReadMessageAsync(NetworkStream stream, CancellationToken ct)
    {
        var head = new byte[2];
        if (!await ReadExactlyOrEndAsync(stream, head, ct)) return null;
        int length = head[1], lengthBytes = 0;
        byte[] extra = [];
        if ((length & 0x80) != 0)
        {
            lengthBytes = length & 0x7f;
            extra = new byte[lengthBytes];
            if (!await ReadExactlyOrEndAsync(stream, extra, ct)) return null;
            length = extra.Aggregate(0, (n, b) => (n << 8) | b);
        }
        var message = new byte[2 + lengthBytes + length];
        head.CopyTo(message, 0);
        extra.CopyTo(message, 2);
        return await ReadExactlyOrEndAsync(stream, message.AsMemory(2 + lengthBytes), ct) ? message : null;
    }

    private static async Task<bool> ReadExactlyOrEndAsync(NetworkStream stream, Memory<byte> buffer, CancellationToken ct)
    {
        try
        {
            await stream.ReadExactlyAsync(buffer, ct);
            return true;
        }
        catch (EndOfStreamException) { return false; }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        _stop.Dispose();
    }
}
