using System.DirectoryServices.Protocols;
using System.Formats.Asn1;
using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;

namespace CertPortal.Gal;

/// <summary>A listing of people (<see cref="LdapDirectory.ListPeopleWithMailAsync"/>).</summary>
/// <param name="Incomplete">Why people may be missing from it (the server cut the search short, part of the tree is held
/// elsewhere, a group was read in part); null when it is everyone the search matches.</param>
public sealed record DirectoryPeopleListing(IReadOnlyList<(IReadOnlyList<string> Mails, string DisplayName)> People, string? Incomplete);

/// <summary>What <see cref="LdapDirectory.PublishCertificateAsync"/> did.</summary>
/// <param name="EntryDn">The person entry holding the certificate.</param>
/// <param name="EntryCreated">True when we created the entry.</param>
/// <param name="CertificateAdded">False when userCertificate already held the certificate.</param>
/// <param name="SmimeValueAdded">False when userSMIMECertificate already held a value carrying it.</param>
public sealed record CertificatePublication(string EntryDn, bool EntryCreated, bool CertificateAdded, bool SmimeValueAdded);

/// <summary>
/// Gateway to the LDAP directory (GAL): publishes user certificates to person entries and CA
/// certificates/CRLs to the PKI entry. One connection and bind per call; nothing is held between
/// calls, so a directory restart needs no recovery and the class is safe to share (singleton).
/// S.DS.P is synchronous; the async methods run it on the thread pool, bounded by TimeoutSeconds.
/// Only values we wrote are ever removed: certificates from other CAs stay.
/// </summary>
public sealed class LdapDirectory
{
    // RFC 4528 assertion control: the modify only applies if the filter still matches the entry.
    private const string AssertionControlOid = "1.3.6.1.1.12";
    private const int MaxOptimisticRetries = 5;

    private readonly DirectoryOptions _options;
    private readonly ILogger _logger;
    private readonly AttributeNames _names;

    public LdapDirectory(DirectoryOptions options, ILogger<LdapDirectory>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = options.Validate();
        if (!options.IsEnabled)
        {
            errors = [$"{DirectoryOptions.SectionName}:Url is empty (directory publishing is off)"];
        }
        if (errors.Count > 0)
        {
            throw new ArgumentException("Invalid directory options: " + string.Join("; ", errors), nameof(options));
        }
        _options = options;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _names = AttributeNames.For(options.Schema);
    }

    /// <summary>
    /// Adds <paramref name="certDer"/> to the person with <paramref name="mail"/> (userCertificate and a
    /// one-certificate PKCS#7 in userSMIMECertificate), creating the entry when allowed. Idempotent;
    /// never removes or replaces other values.
    /// </summary>
    /// <param name="fence">Asked before each write request (see <see cref="DirectoryWriteFence"/>); null where nothing else writes the entry.</param>
    public Task<CertificatePublication> PublishCertificateAsync(string mail, string displayName, byte[] certDer, DirectoryWriteFence? fence = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(mail);
        ArgumentNullException.ThrowIfNull(displayName);
        var smime = SmimeCertificateBundle.Create(certDer); // also validates certDer
        return RunAsync(conn => Publish(conn, fence, mail, displayName, certDer, smime), cancellationToken);
    }

    /// <summary>
    /// Removes this certificate (and the userSMIMECertificate value carrying only it) from the person with
    /// <paramref name="mail"/>. Returns false when there was nothing to remove (no entry, or no such value).
    /// </summary>
    /// <param name="fence">Asked before each write request (see <see cref="DirectoryWriteFence"/>); null where nothing else writes the entry.</param>
    public Task<bool> RemoveCertificateAsync(string mail, byte[] certDer, DirectoryWriteFence? fence = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(mail);
        ArgumentNullException.ThrowIfNull(certDer);
        return RunAsync(conn => Remove(conn, fence, mail, certDer), cancellationToken);
    }

    /// <summary>The userCertificate values of the person with <paramref name="mail"/>; empty when there is no such entry.</summary>
    public Task<IReadOnlyList<byte[]>> GetCertificatesAsync(string mail, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(mail);
        return RunAsync<IReadOnlyList<byte[]>>(conn => FindPerson(conn, mail)?.Certificates ?? [], cancellationToken);
    }

    /// <summary>The certificates the person with <paramref name="mail"/> carries in each attribute: userCertificate's values, and
    /// the certificates inside userSMIMECertificate's PKCS#7 values (unreadable values skipped). The two are written by
    /// separate modifications, so a write cut off between them (a timeout, a crash, an outage) leaves them different, and
    /// a reconciliation must look at both. Also every mail value of the entry (empty when there is none): mail is
    /// multi-valued (aliases), and the entry holds the certificates of each of its mailboxes.</summary>
    public Task<(IReadOnlyList<byte[]> Certificates, IReadOnlyList<byte[]> SmimeCertificates, IReadOnlyList<string> Mails)> GetPublishedAsync(
        string mail, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(mail);
        return RunAsync<(IReadOnlyList<byte[]>, IReadOnlyList<byte[]>, IReadOnlyList<string>)>(conn =>
        {
            var person = FindPerson(conn, mail);
            if (person is null) return ([], [], []);
            var carried = person.SmimeValues
                .SelectMany(v => SmimeCertificateBundle.TryReadCertificates(v, out var certs) ? certs : [])
                .ToList();
            return (person.Certificates, carried, person.Mails);
        }, cancellationToken);
    }

    /// <summary>Every person under PeopleBaseDn that holds any userCertificate or userSMIMECertificate: its mail and
    /// certificates, those inside its userSMIMECertificate values included (for resync, which must find our certificates on
    /// entries the database no longer expects, also where only a mail client's "Publish to GAL" bundle holds them).
    /// Paged (RFC 2696) so servers' size limits (OpenLDAP: 500) do not truncate the answer.</summary>
    public Task<IReadOnlyList<(string Mail, IReadOnlyList<byte[]> Certificates)>> ListPeopleWithCertificatesAsync(CancellationToken cancellationToken = default) =>
        RunAsync<IReadOnlyList<(string, IReadOnlyList<byte[]>)>>(conn =>
        {
            var result = new List<(string, IReadOnlyList<byte[]>)>();
            var paging = new PageResultRequestControl(200);
            while (true)
            {
                var request = new SearchRequest(_options.PeopleBaseDn, "(&(objectClass=person)(|(userCertificate=*)(userSMIMECertificate=*)))",
                    SearchScope.Subtree, "mail", _names.UserCertificate, _names.UserSmimeCertificate);
                request.Controls.Add(paging);
                var response = (SearchResponse)SendForResponse(conn, request, "search", _options.PeopleBaseDn, ResultCode.NoSuchObject);
                foreach (SearchResultEntry entry in response.Entries)
                {
                    var mail = BinaryValues(entry, "mail").Select(b => Encoding.UTF8.GetString(b)).FirstOrDefault();
                    if (mail is null) continue;
                    var carried = BinaryValues(entry, "userSMIMECertificate")
                        .SelectMany(v => SmimeCertificateBundle.TryReadCertificates(v, out var certs) ? certs : []);
                    result.Add((mail, [.. BinaryValues(entry, "userCertificate"), .. carried]));
                }
                var cookie = response.Controls.OfType<PageResultResponseControl>().FirstOrDefault()?.Cookie;
                if (cookie is null || cookie.Length == 0) return result;
                paging.Cookie = cookie;
            }
        }, cancellationToken);

    /// <summary>Every person under <paramref name="baseDn"/> with a mail attribute: its mail values (as the entry lists them:
    /// mail is multi-valued, the first is usually the primary address and the rest aliases) and display name (displayName,
    /// else cn). With <paramref name="groupDn"/>, only the group's members (its member / uniqueMember values), and the members
    /// of the groups among them, at any depth. Paged (RFC 2696), as above. For directory-driven enrollment, which withdraws the
    /// links of people a listing no longer finds, and so must know whether the listing is all there is
    /// (<see cref="DirectoryPeopleListing.Incomplete"/>).</summary>
    public Task<DirectoryPeopleListing> ListPeopleWithMailAsync(string baseDn, string? groupDn, CancellationToken cancellationToken = default) =>
        RunAsync(conn =>
        {
            var cut = new List<string>();
            // Member values and entry DNs come as each was written (slapd keeps a value's case and inner spaces), so they
            // are compared as DNs (their keys), not as strings.
            var members = string.IsNullOrWhiteSpace(groupDn) ? null : ReadGroupMembers(conn, groupDn, "(objectClass=*)", cut, tolerateAbsence: false)!;
            var people = new List<(string Key, IReadOnlyList<string> Mails, string DisplayName)>();
            var read = 0;
            var paging = new PageResultRequestControl(500);
            while (true)
            {
                var request = new SearchRequest(baseDn, "(&(objectClass=person)(mail=*))", SearchScope.Subtree, "mail", "displayName", "cn");
                request.Controls.Add(paging);
                // A search the server cut short still hands back the entries it found: they are people to invite, but not all.
                // OpenLDAP ends a paged search at its size.prtotal limit with 4 sizeLimitExceeded and no cookie, which without
                // this check read as the last page; 3 timeLimitExceeded is the same for time.
                var response = (SearchResponse)SendForResponse(conn, request, "search", baseDn,
                    ResultCode.NoSuchObject, ResultCode.SizeLimitExceeded, ResultCode.TimeLimitExceeded);
                read += response.Entries.Count;
                if (response.ResultCode is ResultCode.SizeLimitExceeded or ResultCode.TimeLimitExceeded)
                    cut.Add($"the directory ended the search with {(int)response.ResultCode} {response.ResultCode} after {read} entries");
                // Continuation references (a subtree held by another server, RFC 4511 4.5.3) are not followed: the people there
                // were not read.
                if (response.References.Count > 0)
                    cut.Add($"part of the tree is referred to {ReferralUrls(response.References)}, which is not followed");
                foreach (SearchResultEntry entry in response.Entries)
                {
                    var mails = BinaryValues(entry, "mail").Select(b => Encoding.UTF8.GetString(b)).ToList();
                    var name = BinaryValues(entry, "displayName").Concat(BinaryValues(entry, "cn")).Select(b => Encoding.UTF8.GetString(b)).FirstOrDefault();
                    if (mails.Count > 0) people.Add((DistinguishedNameMatch.Key(entry.DistinguishedName), mails, name ?? ""));
                }
                var cookie = response.Controls.OfType<PageResultResponseControl>().FirstOrDefault()?.Cookie;
                if (response.ResultCode != ResultCode.Success || cookie is null || cookie.Length == 0) break;
                paging.Cookie = cookie;
            }
            IEnumerable<(string Key, IReadOnlyList<string> Mails, string DisplayName)> listed = people;
            if (members is not null)
            {
                var inGroup = WithNestedMembers(conn, groupDn!, members, people.Select(p => p.Key).ToHashSet(StringComparer.Ordinal), cut);
                listed = people.Where(p => inGroup.Contains(p.Key));
            }
            return new DirectoryPeopleListing([.. listed.Select(p => (p.Mails, p.DisplayName))], cut.Count == 0 ? null : string.Join("; ", cut.Distinct()));
        }, cancellationToken);

    /// <summary>At most this many member values that are no person of the listing are looked up as possible groups in one
    /// listing; past it the listing is incomplete.</summary>
    internal const int MaxNestedLookups = 10_000;

    private const string GroupFilter = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=group))";

    /// <summary>The keys of <paramref name="members"/> and of the members of the groups among them, at any depth (a group of
    /// groups: "Staff" holding "Sales" and "Engineering" is how directories are kept, Active Directory's above all). Only a member
    /// that is none of the people listed is looked up (a base search with a group filter), so a flat group costs nothing more.
    /// A member that is not there (deleted, or outside what the bind may read) is no one; a loop of groups is read once.</summary>
    private static HashSet<string> WithNestedMembers(LdapConnection conn, string groupDn, List<string> members, HashSet<string> people, List<string> cut)
    {
        var keys = new HashSet<string>(StringComparer.Ordinal) { DistinguishedNameMatch.Key(groupDn) };
        var pending = new Queue<string>();
        foreach (var member in members)
            if (keys.Add(DistinguishedNameMatch.Key(member)) && !people.Contains(DistinguishedNameMatch.Key(member))) pending.Enqueue(member);
        var lookups = 0;
        while (pending.TryDequeue(out var dn))
        {
            if (++lookups > MaxNestedLookups)
            {
                cut.Add($"more than {MaxNestedLookups} members of '{groupDn}' and its groups are not people of the listing; the rest were not looked up as groups");
                break;
            }
            if (ReadGroupMembers(conn, dn, GroupFilter, cut, tolerateAbsence: true) is not { } nested) continue;
            foreach (var member in nested)
            {
                var key = DistinguishedNameMatch.Key(member);
                if (keys.Add(key) && !people.Contains(key)) pending.Enqueue(member);
            }
        }
        return keys;
    }

    /// <summary>A group's member and uniqueMember values. Active Directory hands out the values of a large attribute a range at
    /// a time (MaxValRange, 1500 by default): asked for <c>member</c>, it answers <c>member;range=0-1499</c>, and the rest comes
    /// by asking for <c>member;range=1500-*</c> and so on, until the answer's range ends in <c>*</c> ([MS-ADTS] 3.1.1.3.1.3.3).
    /// Read as one answer, a group of 5,000 had 1,500 members. A range that does not follow on from the last one (the group
    /// changed meanwhile, or a server that answers otherwise) ends the reading, and the listing says it is incomplete.
    /// A uniqueMember value may carry an optional UID after its DN, which is dropped (<see cref="DistinguishedNameMatch.WithoutOptionalUid"/>).
    /// With <paramref name="tolerateAbsence"/>, null when the entry is not there or is no group (<paramref name="filter"/>); a
    /// member held by another server (a referral) is no one we can read, and makes the listing incomplete.</summary>
    private static List<string>? ReadGroupMembers(LdapConnection conn, string groupDn, string filter, List<string> cut, bool tolerateAbsence)
    {
        var values = new List<string>();
        ResultCode[] tolerated = tolerateAbsence ? [ResultCode.NoSuchObject, ResultCode.Referral] : [];
        var found = (SearchResponse)SendForResponse(conn, new SearchRequest(groupDn, filter, SearchScope.Base, "member", "uniqueMember"), "search",
            groupDn, tolerated);
        if (found.ResultCode == ResultCode.Referral)
            cut.Add($"the member '{groupDn}' is held by another server ({ReferralUrls(found.Referral ?? [])}), which is not followed");
        var entry = found.Entries.Cast<SearchResultEntry>().FirstOrDefault();
        if (entry is null) return tolerateAbsence ? null : values;
        values.AddRange(BinaryValues(entry, "uniqueMember").Select(v => DistinguishedNameMatch.WithoutOptionalUid(Encoding.UTF8.GetString(v))));
        var (range, next, _) = MemberRange(entry);
        values.AddRange(range.Select(Encoding.UTF8.GetString));
        while (next is { } low)
        {
            entry = ((SearchResponse)SendForResponse(conn, new SearchRequest(groupDn, "(objectClass=*)", SearchScope.Base, $"member;range={low}-*"),
                "search", groupDn)).Entries.Cast<SearchResultEntry>().FirstOrDefault();
            var (more, following, came) = entry is null ? ([], null, false) : MemberRange(entry, low);
            if (!came)
            {
                cut.Add($"the group '{groupDn}' was handed out in ranges, and the range from {low} did not come");
                break;
            }
            values.AddRange(more.Select(Encoding.UTF8.GetString));
            next = following; // > low: a range ends at or after its start
        }
        return values;
    }

    /// <summary>The member values in <paramref name="entry"/>, where the next range starts (null: none follows), and whether a
    /// member attribute was there. A plain <c>member</c> is all there is; <c>member;range=L-H</c> is one range, the last when H is
    /// <c>*</c>. With <paramref name="expectedLow"/>, only the range that starts there counts.</summary>
    private static (List<byte[]> Values, int? Next, bool Found) MemberRange(SearchResultEntry entry, int? expectedLow = null)
    {
        var values = new List<byte[]>();
        int? next = null;
        var found = false;
        foreach (string name in entry.Attributes.AttributeNames)
        {
            var parts = name.Split(';');
            if (!parts[0].Equals("member", StringComparison.OrdinalIgnoreCase)) continue;
            var range = parts.Skip(1).FirstOrDefault(o => o.StartsWith("range=", StringComparison.OrdinalIgnoreCase));
            if (range is not null)
            {
                var bounds = range["range=".Length..].Split('-', 2);
                if (bounds.Length != 2 || !int.TryParse(bounds[0], NumberStyles.None, CultureInfo.InvariantCulture, out var low)
                    || expectedLow is { } expected && low != expected) continue;
                if (bounds[1] != "*")
                {
                    if (!int.TryParse(bounds[1], NumberStyles.None, CultureInfo.InvariantCulture, out var high) || high < low) continue;
                    next = high + 1;
                }
            }
            else if (expectedLow is not null) continue;
            found = true;
            values.AddRange(entry.Attributes[name].GetValues(typeof(byte[])).Cast<byte[]>());
        }
        return (values, next, found);
    }

    /// <summary>
    /// Makes a PKI entry (<see cref="DirectoryOptions.PkiEntryDn"/> or <see cref="DirectoryOptions.RootPkiEntryDn"/>)
    /// hold exactly these CA certificates and CRL (and delta CRL when given).
    /// A null CRL / delta CRL leaves that attribute as it is (none signed yet); an empty CA list removes cACertificate.
    /// Creates the entry (cRLDistributionPoint + pkiCA) in OpenLdap mode; in ActiveDirectory mode it must exist.
    /// </summary>
    /// <param name="fence">Asked before each write request (see <see cref="DirectoryWriteFence"/>); null where nothing else writes the entry.</param>
    /// <param name="deltaCrlsOff">This CA issues no delta CRLs (any more): deltaRevocationList is removed. A null
    /// <paramref name="deltaCrlDer"/> alone cannot say so, since it also means "none signed yet".</param>
    public Task PublishCaAndCrlAsync(string entryDn, IReadOnlyList<byte[]> caCertsDer, byte[]? crlDer, byte[]? deltaCrlDer,
        DirectoryWriteFence? fence, bool deltaCrlsOff = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(caCertsDer);
        ArgumentException.ThrowIfNullOrWhiteSpace(entryDn);
        if (deltaCrlsOff && deltaCrlDer is not null) throw new ArgumentException("A delta CRL was given with delta CRLs off.", nameof(deltaCrlDer));
        return RunAsync(conn => { PublishPki(conn, fence, entryDn, caCertsDer, crlDer, deltaCrlDer, deltaCrlsOff); return true; }, cancellationToken);
    }

    // ---------------------------------------------------------------- person entries

    private sealed record PersonEntry(string Dn, IReadOnlyList<byte[]> Certificates, IReadOnlyList<byte[]> SmimeValues, string? EntryCsn,
        IReadOnlyList<string> Mails);

    private CertificatePublication Publish(LdapConnection conn, DirectoryWriteFence? fence, string mail, string displayName, byte[] certDer, byte[] smime)
    {
        var person = FindPerson(conn, mail, unknownIfReferred: _options.EffectiveCreateMissingEntries);
        if (person is null)
        {
            if (!_options.EffectiveCreateMissingEntries)
            {
                throw new DirectoryEntryNotFoundException(mail, _options.PeopleBaseDn);
            }
            var dn = PersonDn(mail);
            var add = new AddRequest(dn, PersonAttributes(mail, displayName, certDer, smime));
            var result = Write(conn, fence, add, "add", dn, ResultCode.EntryAlreadyExists);
            if (result == ResultCode.Success)
            {
                _logger.LogInformation("Created directory entry {Dn} with certificate", dn);
                return new CertificatePublication(dn, EntryCreated: true, CertificateAdded: true, SmimeValueAdded: true);
            }
            // Someone created it between our search and add (another worker): carry on with the modify path.
            person = FindPerson(conn, mail) ?? throw new DirectoryOperationFailedException("add", dn, ResultCode.EntryAlreadyExists,
                "an entry with this DN exists but does not match the mail search (wrong objectClass?)");
        }

        var certAdded = false;
        if (!person.Certificates.Any(c => c.AsSpan().SequenceEqual(certDer)))
        {
            var mod = new ModifyRequest(person.Dn, DirectoryAttributeOperation.Add, _names.UserCertificate, certDer);
            // 20 attributeOrValueExists: already there (race, or same issuer+serial per certificateExactMatch): fine.
            certAdded = Write(conn, fence, mod, "modify/add userCertificate", person.Dn, ResultCode.AttributeOrValueExists) == ResultCode.Success;
        }

        var smimeAdded = UpdateSmimeValues(conn, fence, mail, person,
            values => values.Any(v => SmimeCertificateBundle.CarriesOnly(v, certDer)) ? null : [.. values, smime],
            addValue: smime, removeCert: null);

        _logger.LogInformation("Published certificate to {Dn} (userCertificate {CertState}, userSMIMECertificate {SmimeState})",
            person.Dn, certAdded ? "added" : "already present", smimeAdded ? "added" : "already present");
        return new CertificatePublication(person.Dn, EntryCreated: false, certAdded, smimeAdded);
    }

    private bool Remove(LdapConnection conn, DirectoryWriteFence? fence, string mail, byte[] certDer)
    {
        var person = FindPerson(conn, mail);
        if (person is null)
        {
            return false;
        }

        var removed = false;
        if (person.Certificates.Any(c => c.AsSpan().SequenceEqual(certDer)))
        {
            var mod = new ModifyRequest(person.Dn, DirectoryAttributeOperation.Delete, _names.UserCertificate, certDer);
            // 16 noSuchAttribute: already gone (race): fine.
            removed |= Write(conn, fence, mod, "modify/delete userCertificate", person.Dn, ResultCode.NoSuchAttribute) == ResultCode.Success;
        }

        removed |= UpdateSmimeValues(conn, fence, mail, person, values => WithoutCertificate(values, certDer), addValue: null, removeCert: certDer);

        if (removed)
        {
            _logger.LogInformation("Removed certificate from {Dn}", person.Dn);
        }
        return removed;
    }

    /// <summary>The values with this certificate gone: a value that carries only it is dropped, one that bundles it with other
    /// certificates keeps the others (<see cref="SmimeCertificateBundle.Without"/>). Null when no value carries it.</summary>
    private static List<byte[]>? WithoutCertificate(IReadOnlyList<byte[]> values, byte[] certDer)
    {
        var changed = false;
        var result = new List<byte[]>(values.Count);
        foreach (var v in values)
        {
            if (SmimeCertificateBundle.CarriesOnly(v, certDer))
            {
                changed = true;
            }
            else if (SmimeCertificateBundle.Without(v, certDer) is { } rest)
            {
                result.Add(rest);
                changed = true;
            }
            else
            {
                result.Add(v);
            }
        }
        return changed ? result : null;
    }

    /// <summary>
    /// Changes userSMIMECertificate. OpenLDAP defines it without an EQUALITY rule (RFC 2798 schema), so slapd
    /// refuses to add or delete single values (error 18 inappropriateMatching "no equality matching rule");
    /// only a replace of the whole value set works. To not lose a value written concurrently by someone else,
    /// the replace carries an RFC 4528 assertion on the entryCSN we read, and is retried on 122 assertionFailed.
    /// AD gives the attribute Octet String syntax with equality matching, so there we add/delete the one value.
    /// <paramref name="newValues"/> returns the desired set, or null when nothing needs to change.
    /// </summary>
    private bool UpdateSmimeValues(LdapConnection conn, DirectoryWriteFence? fence, string mail, PersonEntry person,
        Func<IReadOnlyList<byte[]>, List<byte[]>?> newValues, byte[]? addValue, byte[]? removeCert)
    {
        if (_options.Schema == DirectorySchema.ActiveDirectory)
        {
            if (addValue is not null && newValues(person.SmimeValues) is not null)
            {
                var mod = new ModifyRequest(person.Dn, DirectoryAttributeOperation.Add, _names.UserSmimeCertificate, addValue);
                return Write(conn, fence, mod, "modify/add userSMIMECertificate", person.Dn, ResultCode.AttributeOrValueExists) == ResultCode.Success;
            }
            if (removeCert is null)
            {
                return false;
            }
            var removedAny = false;
            foreach (var v in person.SmimeValues)
            {
                if (SmimeCertificateBundle.CarriesOnly(v, removeCert))
                {
                    var mod = new ModifyRequest(person.Dn, DirectoryAttributeOperation.Delete, _names.UserSmimeCertificate, v);
                    removedAny |= Write(conn, fence, mod, "modify/delete userSMIMECertificate", person.Dn, ResultCode.NoSuchAttribute) == ResultCode.Success;
                }
                else if (SmimeCertificateBundle.Without(v, removeCert) is { } rest)
                {
                    // One modify request, so the bundle is never missing (RFC 4511 §4.6: its changes apply together or not at all).
                    var delete = new DirectoryAttributeModification { Name = _names.UserSmimeCertificate, Operation = DirectoryAttributeOperation.Delete };
                    delete.Add(v);
                    var add = new DirectoryAttributeModification { Name = _names.UserSmimeCertificate, Operation = DirectoryAttributeOperation.Add };
                    add.Add(rest);
                    removedAny |= Write(conn, fence, new ModifyRequest(person.Dn, delete, add), "modify userSMIMECertificate bundle", person.Dn,
                        ResultCode.NoSuchAttribute) == ResultCode.Success;
                }
            }
            return removedAny;
        }

        var current = person;
        for (var attempt = 1; ; attempt++)
        {
            var desired = newValues(current.SmimeValues);
            if (desired is null)
            {
                return false;
            }
            var mod = new DirectoryAttributeModification { Name = _names.UserSmimeCertificate, Operation = DirectoryAttributeOperation.Replace };
            foreach (var v in desired)
            {
                mod.Add(v);
            }
            var request = new ModifyRequest(current.Dn, mod);
            if (current.EntryCsn is not null)
            {
                request.Controls.Add(new DirectoryControl(AssertionControlOid, EncodeEqualityFilter("entryCSN", current.EntryCsn), isCritical: true, serverSide: true));
            }
            var result = Write(conn, fence, request, "modify/replace userSMIMECertificate", current.Dn, (ResultCode)122 /* assertionFailed */);
            if (result == ResultCode.Success)
            {
                return true;
            }
            if (attempt >= MaxOptimisticRetries)
            {
                throw new DirectoryOperationFailedException("modify/replace userSMIMECertificate", current.Dn, result,
                    $"entry kept changing during {attempt} attempts");
            }
            current = FindPerson(conn, mail) ?? throw new DirectoryOperationFailedException(
                "modify/replace userSMIMECertificate", current.Dn, ResultCode.NoSuchObject, "entry was deleted meanwhile");
        }
    }

    /// <param name="unknownIfReferred">Where "not found" would create an entry: a search that finds no one here but was referred
    /// elsewhere then fails (see below). Everywhere else a referral is ignored as before: Active Directory answers every
    /// subtree search from a domain's root with continuation references to its DNS and configuration partitions, and a
    /// removal or a read for someone not here has nothing to do on a server we never write to.</param>
    private PersonEntry? FindPerson(LdapConnection conn, string mail, bool unknownIfReferred = false)
    {
        // objectClass=person covers inetOrgPerson (OpenLDAP) and user/contact (AD) but not groups or
        // public folders that may carry the same mail in AD.
        var filter = $"(&(objectClass=person)(mail={LdapEscaping.EscapeFilterValue(mail)}))";
        var request = new SearchRequest(_options.PeopleBaseDn, filter, SearchScope.Subtree,
            _names.UserCertificate, _names.UserSmimeCertificate, "entryCSN", "mail")
        {
            SizeLimit = 2, // we only need to know "one" vs "more than one"
        };
        var response = (SearchResponse)SendForResponse(conn, request, "search", _options.PeopleBaseDn, ResultCode.SizeLimitExceeded);
        var entries = response.Entries.Cast<SearchResultEntry>().ToList();
        if (entries.Count > 1 || response.ResultCode == ResultCode.SizeLimitExceeded)
        {
            throw new DirectoryEntryAmbiguousException(mail, entries.Select(e => e.DistinguishedName).ToList());
        }
        if (entries.Count == 0 && unknownIfReferred && response.References.Count > 0)
        {
            // A continuation reference (RFC 4511 §4.5.3): part of the tree under PeopleBaseDn is held by another server (a
            // subordinate referral object), and the person may live there. We do not follow referrals (see Connect), so this is
            // "unknown", not "no such person": read as the latter, OpenLdap mode created a second entry for them here.
            throw new DirectoryOperationFailedException("search", _options.PeopleBaseDn, ResultCode.Referral,
                $"no entry with mail '{mail}' here, and the search was referred to {ReferralUrls(response.References)}, which is not followed");
        }
        if (entries.Count == 0)
        {
            return null;
        }
        var entry = entries[0];
        return new PersonEntry(entry.DistinguishedName,
            BinaryValues(entry, "userCertificate"),
            BinaryValues(entry, "userSMIMECertificate"),
            BinaryValues(entry, "entryCSN").Select(b => Encoding.UTF8.GetString(b)).FirstOrDefault(),
            BinaryValues(entry, "mail").Select(b => Encoding.UTF8.GetString(b)).ToList());
    }

    /// <summary>
    /// The RDN is the mail address, not the display name: two people may share "John Smith", and a
    /// cn= RDN would collide (68 entryAlreadyExists) or need a made-up suffix. Mail is what we search by
    /// and is unique per mailbox, so the DN can never collide with another person, and a display name
    /// change never needs a modrdn. (A multi-valued RDN cn=..+mail=.. would also be unique, but several
    /// LDAP clients and address-book UIs handle '+' RDNs badly.)
    /// </summary>
    private string PersonDn(string mail) => $"mail={LdapEscaping.EscapeDnValue(mail)},{_options.PeopleBaseDn}";

    private DirectoryAttribute[] PersonAttributes(string mail, string displayName, byte[] certDer, byte[] smime)
    {
        // inetOrgPerson requires cn and sn. We do not split a display name into given name/surname
        // (culture-dependent guessing); sn carries the whole display name. Without personal data, both
        // carry the mail address, which is published anyway.
        var name = _options.PublishPersonalData && !string.IsNullOrWhiteSpace(displayName) ? displayName.Trim() : mail;
        var attrs = new List<DirectoryAttribute>
        {
            new("objectClass", "top", "person", "organizationalPerson", "inetOrgPerson"),
            new("mail", mail),
            new("cn", name),
            new("sn", name),
            new(_names.UserCertificate, certDer),
            new(_names.UserSmimeCertificate, smime),
        };
        if (_options.PublishPersonalData && !string.IsNullOrWhiteSpace(displayName))
        {
            attrs.Add(new DirectoryAttribute("displayName", displayName.Trim()));
        }
        return [.. attrs];
    }

    // ---------------------------------------------------------------- PKI entry

    private void PublishPki(LdapConnection conn, DirectoryWriteFence? fence, string dn, IReadOnlyList<byte[]> caCerts, byte[]? crl, byte[]? deltaCrl,
        bool deltaCrlsOff)
    {
        var classes = ObjectClasses(conn, dn);
        if (classes is null)
        {
            if (_options.Schema == DirectorySchema.ActiveDirectory)
            {
                // In AD the CA/CDP objects live under CN=Public Key Services in the configuration partition and are
                // managed by AD CS tooling; we only update them.
                throw new DirectoryOperationFailedException("search", dn, ResultCode.NoSuchObject, "PKI entry does not exist (ActiveDirectory mode never creates it)");
            }
            var attrs = new List<DirectoryAttribute>
            {
                // cRLDistributionPoint is structural and needs cn; pkiCA (RFC 4523 §4.3) is the auxiliary class allowing cACertificate.
                new("objectClass", "top", "cRLDistributionPoint", "pkiCA"),
                new("cn", CnOfFirstRdn(dn)),
            };
            if (caCerts.Count > 0)
            {
                attrs.Add(new DirectoryAttribute(_names.CaCertificate, caCerts.Cast<object>().ToArray()));
            }
            if (crl is not null)
            {
                attrs.Add(new DirectoryAttribute(_names.CertificateRevocationList, crl));
            }
            if (deltaCrl is not null)
            {
                attrs.Add(new DirectoryAttribute(_names.DeltaRevocationList, deltaCrl));
            }
            if (Write(conn, fence, new AddRequest(dn, [.. attrs]), "add", dn, ResultCode.EntryAlreadyExists) == ResultCode.Success)
            {
                _logger.LogInformation("Created PKI entry {Dn}", dn);
                return;
            }
            // Created concurrently: fall through to replace.
            classes = ObjectClasses(conn, dn) ?? [];
        }

        var mods = new List<DirectoryAttributeModification>();
        if (_options.Schema == DirectorySchema.OpenLdap && !classes.Any(c => CaCertificateClasses.Contains(c, StringComparer.OrdinalIgnoreCase)))
        {
            // An entry the operator made as a plain cRLDistributionPoint (RFC 4523 §4.2) may hold the CRLs but not cACertificate,
            // and slapd refused the whole modify (65 objectClassViolation), CRL included. pkiCA (§4.3) is the auxiliary class
            // that allows it, the one we create entries with.
            var addClass = new DirectoryAttributeModification { Name = "objectClass", Operation = DirectoryAttributeOperation.Add };
            addClass.Add("pkiCA");
            mods.Add(addClass);
        }
        mods.Add(Replace(_names.CaCertificate, caCerts));
        if (crl is not null)
        {
            mods.Add(Replace(_names.CertificateRevocationList, [crl]));
        }
        if (deltaCrl is not null)
        {
            mods.Add(Replace(_names.DeltaRevocationList, [deltaCrl]));
        }
        else if (deltaCrlsOff)
        {
            // Delta CRLs switched off: the last delta would stay beside complete CRLs newer than its base, never re-signed, and
            // run out at its nextUpdate. Relying parties that read deltaRevocationList (RFC 4523 §2.6) take what is there for
            // the current delta; a replace without values removes it, and is ignored when it is absent (RFC 4511 §4.6).
            mods.Add(Replace(_names.DeltaRevocationList, []));
        }
        Write(conn, fence, new ModifyRequest(dn, [.. mods]), "modify/replace CA certificates and CRLs", dn);
        _logger.LogInformation("Published {Count} CA certificate(s){Crl}{Delta} to {Dn}", caCerts.Count,
            crl is null ? "" : " and CRL", deltaCrl is null ? "" : " and delta CRL", dn);
    }

    /// <summary>The object classes that allow cACertificate: pkiCA (RFC 4523 §4.3) and the certificationAuthority classes (RFC 4519).</summary>
    private static readonly string[] CaCertificateClasses = ["pkiCA", "certificationAuthority", "certificationAuthority-V2"];

    /// <summary>The objectClass values of the entry <paramref name="dn"/>; null when there is no such entry.</summary>
    private static IReadOnlyList<string>? ObjectClasses(LdapConnection conn, string dn)
    {
        var search = new SearchRequest(dn, "(objectClass=*)", SearchScope.Base, "objectClass");
        var response = (SearchResponse)SendForResponse(conn, search, "search", dn, ResultCode.NoSuchObject);
        if (response.ResultCode != ResultCode.Success || response.Entries.Count == 0) return null;
        return BinaryValues(response.Entries[0], "objectClass").Select(b => Encoding.UTF8.GetString(b)).ToList();
    }

    private static DirectoryAttributeModification Replace(string name, IEnumerable<byte[]> values)
    {
        var mod = new DirectoryAttributeModification { Name = name, Operation = DirectoryAttributeOperation.Replace };
        foreach (var v in values)
        {
            mod.Add(v);
        }
        return mod; // no values = delete the attribute (RFC 4511 §4.6), which is harmless if absent
    }

    /// <summary>The unescaped value of the leading "cn=" RDN of a DN (cRLDistributionPoint's required cn).</summary>
    internal static string CnOfFirstRdn(string dn)
    {
        var s = dn.TrimStart();
        if (!s.StartsWith("cn=", StringComparison.OrdinalIgnoreCase))
        {
            throw new ArgumentException("DN must start with cn=", nameof(dn));
        }
        var bytes = new List<byte>();
        for (var i = 3; i < s.Length; i++)
        {
            var c = s[i];
            if (c is ',' or '+' or ';')
            {
                break; // end of this RDN (attribute value assertion)
            }
            if (c == '\\' && i + 1 < s.Length)
            {
                if (i + 2 < s.Length && Uri.IsHexDigit(s[i + 1]) && Uri.IsHexDigit(s[i + 2]))
                {
                    bytes.Add(Convert.ToByte(s.Substring(i + 1, 2), 16)); // \XX is one UTF-8 byte (RFC 4514 §3)
                    i += 2;
                }
                else
                {
                    bytes.AddRange(Encoding.UTF8.GetBytes(s[i + 1].ToString()));
                    i += 1;
                }
                continue;
            }
            bytes.AddRange(Encoding.UTF8.GetBytes(c.ToString()));
        }
        return Encoding.UTF8.GetString([.. bytes]).Trim();
    }

    // ---------------------------------------------------------------- plumbing

    private Task<T> RunAsync<T>(Func<LdapConnection, T> work, CancellationToken cancellationToken) =>
        Task.Run(() =>
        {
            using var conn = Connect();
            return work(conn);
        }, cancellationToken);

    private LdapConnection Connect()
    {
        var uri = new Uri(_options.Url);
        var ldaps = uri.Scheme.Equals("ldaps", StringComparison.OrdinalIgnoreCase);
        var port = uri.Port > 0 ? uri.Port : ldaps ? 636 : 389;
        var timeout = TimeSpan.FromSeconds(_options.TimeoutSeconds);
        LdapConnection? conn = null;
        try
        {
            conn = new LdapConnection(new LdapDirectoryIdentifier(uri.Host, port, fullyQualifiedDnsHostName: true, connectionless: false))
            {
                Timeout = timeout,
            };
            // libldap defaults to LDAPv2 under S.DS.P on Linux, and slapd rejects v2 binds ("A protocol error occurred").
            conn.SessionOptions.ProtocolVersion = 3;
            // We never follow referrals: a referral to another server would be bound with our credentials.
            conn.SessionOptions.ReferralChasing = ReferralChasingOptions.None;
            if (_options.UsesTls && !string.IsNullOrEmpty(_options.TrustedCaCertificatesDirectory))
            {
                // libldap (GnuTLS on Debian) reads TLS options into a per-connection context only when asked to
                // make a new one; without StartNewTlsSessionContext the directory setting would be ignored.
                conn.SessionOptions.TrustedCertificatesDirectory = _options.TrustedCaCertificatesDirectory;
                conn.SessionOptions.StartNewTlsSessionContext();
            }
            if (ldaps)
            {
                conn.SessionOptions.SecureSocketLayer = true;
            }
            if (_options.StartTls)
            {
                // On Linux, .NET 10 sends StartTLS at once on a handle that has not connected yet and fails with
                // "server unavailable". An anonymous bind (no credentials on the wire) opens the connection; StartTLS
                // follows, and the real bind below runs inside TLS. A directory that refuses simple binds without TLS
                // (slapd "security simple_bind=") is how the tests prove the password never travels in clear.
                conn.AuthType = AuthType.Anonymous;
                conn.Bind();
                conn.SessionOptions.StartTransportLayerSecurity(null);
            }
            conn.AuthType = AuthType.Basic;
            conn.Bind(new NetworkCredential(_options.BindDn, _options.BindPassword));
            return conn;
        }
        catch (Exception e) when (e is LdapException or DirectoryOperationException or TlsOperationException or DirectoryException)
        {
            conn?.Dispose();
            // The bind password is in the NetworkCredential only; messages below carry the bind DN at most.
            throw e switch
            {
                LdapException le => new DirectoryUnavailableException(
                    $"Cannot connect/bind to {_options.Url} as '{_options.BindDn}': {le.ErrorCode} {le.Message}", le.ErrorCode, le),
                DirectoryOperationException de => new DirectoryUnavailableException(
                    $"Cannot connect/bind to {_options.Url} as '{_options.BindDn}': {(int)(de.Response?.ResultCode ?? 0)} {de.Message}",
                    (int?)de.Response?.ResultCode, de),
                _ => new DirectoryUnavailableException($"Cannot connect/bind to {_options.Url}: {e.Message}", null, e),
            };
        }
    }

    /// <summary>Sends a request; returns Success or one of the <paramref name="tolerated"/> codes, throws a DirectoryException otherwise.</summary>
    private static ResultCode Send(LdapConnection conn, DirectoryRequest request, string operation, string dn, params ResultCode[] tolerated) =>
        SendForResponse(conn, request, operation, dn, tolerated).ResultCode;

    /// <summary><see cref="Send"/> for a request that changes the directory: the fence is asked first, just before it goes.</summary>
    private ResultCode Write(LdapConnection conn, DirectoryWriteFence? fence, DirectoryRequest request, string operation, string dn,
        params ResultCode[] tolerated)
    {
        fence?.CheckBeforeWrite();
        try
        {
            return Send(conn, request, operation, dn, tolerated);
        }
        catch (DirectoryUnavailableException e) when (e.LdapErrorCode == ServerDown)
        {
            // slapd answers a request larger than it takes (sockbuf_max_incoming_auth, 4 MiB by default: a large CRL) by closing
            // the connection, which the client sees as "server down", an outage to retry later. If the directory takes a new
            // connection at once, it is up and refused this request: the row's own failure, which must not stop the outbox's
            // pass as an outage does. (A directory that restarted in between is read the same way; the row is retried either way.)
            if (!AcceptsConnections()) throw;
            throw new DirectoryRequestRefusedException(operation, dn, ServerDown, ValueBytes(request), e);
        }
    }

    /// <summary>libldap's LDAP_SERVER_DOWN as S.DS.P reports it: the connection was lost.</summary>
    private const int ServerDown = 81;

    private bool AcceptsConnections()
    {
        try
        {
            using var probe = Connect();
            return true;
        }
        catch (DirectoryUnavailableException)
        {
            return false;
        }
    }

    /// <summary>How many bytes of attribute values a write carries (what makes it too large).</summary>
    private static long ValueBytes(DirectoryRequest request)
    {
        IEnumerable<DirectoryAttribute> attributes = request switch
        {
            AddRequest add => add.Attributes.Cast<DirectoryAttribute>(),
            ModifyRequest modify => modify.Modifications.Cast<DirectoryAttribute>(),
            _ => [],
        };
        return attributes.Sum(a => a.GetValues(typeof(byte[])).Cast<byte[]>().Sum(v => (long)v.Length));
    }

    private static DirectoryResponse SendForResponse(LdapConnection conn, DirectoryRequest request, string operation, string dn, params ResultCode[] tolerated)
    {
        DirectoryResponse response;
        try
        {
            response = conn.SendRequest(request);
        }
        catch (DirectoryOperationException e) when (e.Response is not null && tolerated.Contains(e.Response.ResultCode))
        {
            return e.Response;
        }
        catch (DirectoryOperationException e) when (e.Response?.ResultCode is ResultCode.Busy or ResultCode.Unavailable)
        {
            throw new DirectoryUnavailableException($"Directory refused {operation} on '{dn}': {e.Response.ResultCode}", (int)e.Response.ResultCode, e);
        }
        catch (DirectoryOperationException e)
        {
            throw new DirectoryOperationFailedException(operation, dn, e.Response?.ResultCode ?? ResultCode.Other, e.Response?.ErrorMessage ?? e.Message, e);
        }
        catch (LdapException e)
        {
            // Connection lost after bind (81 server down), timeout (85), ...: the outcome of this request is unknown;
            // all our writes are idempotent, so retrying is safe.
            throw new DirectoryUnavailableException($"LDAP {operation} on '{dn}' failed: {e.ErrorCode} {e.Message}", e.ErrorCode, e);
        }
        // S.DS.P hands back result 10 referral (the DN is held by another server) as an answer, not an exception: a search
        // then looked like an empty tree, and a modify of the PKI entry like a success.
        if (response.ResultCode == ResultCode.Referral && !tolerated.Contains(ResultCode.Referral))
        {
            throw new DirectoryOperationFailedException(operation, dn, ResultCode.Referral,
                $"referred to {ReferralUrls(response.Referral ?? [])}, which is not followed");
        }
        return response;
    }

    private static string ReferralUrls(IEnumerable<Uri> urls)
    {
        var list = urls.Select(u => u.ToString()).Distinct().ToList();
        return list.Count == 0 ? "another server" : string.Join(", ", list);
    }

    private static string ReferralUrls(SearchResultReferenceCollection references) =>
        ReferralUrls(references.Cast<SearchResultReference>().SelectMany(r => r.Reference));

    private static IReadOnlyList<byte[]> BinaryValues(SearchResultEntry entry, string baseName)
    {
        // libldap hands back names as the server spells them ("usercertificate;binary" from slapd, "userCertificate"
        // from AD); match the attribute type ignoring case and options.
        var result = new List<byte[]>();
        foreach (string name in entry.Attributes.AttributeNames)
        {
            var type = name.Split(';', 2)[0];
            if (type.Equals(baseName, StringComparison.OrdinalIgnoreCase))
            {
                result.AddRange(entry.Attributes[name].GetValues(typeof(byte[])).Cast<byte[]>());
            }
        }
        return result;
    }

    /// <summary>BER of the Filter "equalityMatch [3] AttributeValueAssertion" (RFC 4511 §4.5.1), the assertion control's value.</summary>
    private static byte[] EncodeEqualityFilter(string attribute, string value)
    {
        var w = new AsnWriter(AsnEncodingRules.BER);
        using (w.PushSequence(new Asn1Tag(TagClass.ContextSpecific, 3, isConstructed: true)))
        {
            w.WriteOctetString(Encoding.UTF8.GetBytes(attribute));
            w.WriteOctetString(Encoding.UTF8.GetBytes(value));
        }
        return w.Encode();
    }

    /// <summary>
    /// Attribute descriptions per schema. OpenLDAP implements RFC 4523: certificate/CRL syntaxes must be
    /// transferred with the ";binary" option (RFC 4522), else slapd answers 17 undefinedAttributeType.
    /// AD gives these attributes Octet String syntax and documents them without options (certutil -dspublish
    /// writes plain names), so we write plain names there. userSMIMECertificate has Binary syntax
    /// in OpenLDAP (RFC 2798) where ";binary" must NOT be used.
    /// </summary>
    private sealed record AttributeNames(string UserCertificate, string UserSmimeCertificate, string CaCertificate,
        string CertificateRevocationList, string DeltaRevocationList)
    {
        public static AttributeNames For(DirectorySchema schema) => schema == DirectorySchema.ActiveDirectory
            ? new("userCertificate", "userSMIMECertificate", "cACertificate", "certificateRevocationList", "deltaRevocationList")
            : new("userCertificate;binary", "userSMIMECertificate", "cACertificate;binary", "certificateRevocationList;binary", "deltaRevocationList;binary");
    }
}
