using System.Formats.Asn1;
using System.Net;
using System.Net.Http.Json;
using System.Numerics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using CertPortal.Authority;
using CertPortal.Tests.Api;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Standards;

/// <summary>S/MIME BR 6.1.1.3: a key revoked for keyCompromise is blocked for good and its other
/// certificates are revoked with it; keys known to be weak are refused. The weak keys are built here,
/// and each CSR is properly self-signed with its weak key, as a broken client would make it.</summary>
public sealed class KeyHygieneTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Fact]
    public async Task Revoking_for_key_compromise_blocks_the_key_and_revokes_its_other_certificates()
    {
        const string email = "compromised@example.test";
        var (key, _) = SubscriberKeyPair.GenerateWithOpenSsl("RSA-2048", $"/CN={email}");
        var serials = new List<string>();
        foreach (var profile in new[] { "signing", "encryption", "dual" })
            serials.Add((await app.EnrollAsync((await app.CreateTokenAsync(email, profile)).Token, key.CreateCsrPem(email))).SerialNumber);
        var (unrelated, _) = await app.IssueAsync(email, "signing");

        await Http.EnsureStatus(await app.RevokeAsync(serials[0], "keyCompromise"), HttpStatusCode.OK);

        foreach (var serial in serials)
        {
            var record = await app.GetCertificateAsync(serial);
            Assert.Equal(("revoked", "keyCompromise"), (record.Status, record.RevocationReason));
        }
        Assert.Equal("valid", (await app.GetCertificateAsync(unrelated.SerialNumber)).Status);
        var crl = ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing.crl"));
        foreach (var serial in serials) Assert.Equal(X509RevocationReason.KeyCompromise, crl.Entries[serial]);
        foreach (var sibling in serials.Skip(1))
        {
            var audit = await app.Admin.GetStringAsync($"/api/v1/audit?target=certificate:{sibling}");
            Assert.Contains("certificate.revoked", audit);
            Assert.Contains($"certificate:{serials[0]}", audit); // names the revocation that caused it
        }

        // The blocked key is listed by the SHA-256 of its SubjectPublicKeyInfo, as openssl computes it.
        var spki = OpenSslSpkiSha256(key.PrivateKeyPem);
        var listed = JsonDocument.Parse(await app.Admin.GetStringAsync("/api/v1/blocked-keys")).RootElement;
        var entry = listed.EnumerateArray().Single(k => k.GetProperty("spkiSha256").GetString() == spki);
        Assert.Equal($"certificate:{serials[0]}", entry.GetProperty("source").GetString());

        // The same key again: refused, naming the reason, and the token stays usable.
        var token = await app.CreateTokenAsync(email, "signing");
        var problem = await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, key.CreateCsrPem(email)), HttpStatusCode.UnprocessableEntity);
        Assert.Contains("compromised", problem.GetProperty("detail").GetString());
        await app.EnrollAsync(token.Token, SubscriberKeyPair.Generate("EC-P256").CreateCsrPem(email));
    }

    [Fact]
    public async Task A_revocation_that_learns_of_the_compromise_later_upgrades_the_reason_and_blocks_the_key()
    {
        const string email = "later@example.test";
        var key = SubscriberKeyPair.Generate("EC-P256");
        var first = await app.EnrollAsync((await app.CreateTokenAsync(email, "signing")).Token, key.CreateCsrPem(email));
        var second = await app.EnrollAsync((await app.CreateTokenAsync(email, "encryption")).Token, key.CreateCsrPem(email));
        await Http.EnsureStatus(await app.RevokeAsync(first.SerialNumber, "superseded"), HttpStatusCode.OK);
        Assert.Equal("valid", (await app.GetCertificateAsync(second.SerialNumber)).Status);

        await Http.EnsureStatus(await app.RevokeAsync(first.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
        Assert.Equal("keyCompromise", (await app.GetCertificateAsync(first.SerialNumber)).RevocationReason);
        Assert.Equal("keyCompromise", (await app.GetCertificateAsync(second.SerialNumber)).RevocationReason);
    }

    [Fact]
    public async Task A_compromise_gives_its_reason_to_the_keys_certificates_revoked_before_for_another_reason()
    {
        // The key's older certificate was superseded; then the key is reported compromised through its newer one. Every
        // certificate for the key says keyCompromise (relying parties distrust what the key signed before), the older one
        // keeping its revocation time.
        const string email = "earlier@example.test";
        var key = SubscriberKeyPair.Generate("EC-P256");
        var older = await app.EnrollAsync((await app.CreateTokenAsync(email, "signing")).Token, key.CreateCsrPem(email));
        var newer = await app.EnrollAsync((await app.CreateTokenAsync(email, "encryption")).Token, key.CreateCsrPem(email));
        await Http.EnsureStatus(await app.RevokeAsync(older.SerialNumber, "superseded"), HttpStatusCode.OK);
        var supersededAt = (await app.GetCertificateAsync(older.SerialNumber)).RevokedAt;

        await Http.EnsureStatus(await app.RevokeAsync(newer.SerialNumber, "keyCompromise"), HttpStatusCode.OK);
        var upgraded = await app.GetCertificateAsync(older.SerialNumber);
        Assert.Equal(("revoked", "keyCompromise", supersededAt), (upgraded.Status, upgraded.RevocationReason, upgraded.RevokedAt));
        var crl = ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing.crl"));
        Assert.Equal(X509RevocationReason.KeyCompromise, crl.Entries[older.SerialNumber]);
    }

    [Fact]
    public async Task A_key_reported_compromised_is_blocked_and_its_certificates_revoked()
    {
        const string email = "reported@example.test";
        var (issued, key) = await app.IssueAsync(email, "dual", "EC-P384");

        var anonymous = await app.Client.PostAsJsonAsync("/api/v1/blocked-keys", new { pem = key.PrivateKeyPem });
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        var (_, auditor) = await app.CreateAccountAsync("key-auditor", "auditor");
        Assert.Equal(HttpStatusCode.Forbidden, (await auditor.PostAsJsonAsync("/api/v1/blocked-keys", new { pem = key.PrivateKeyPem })).StatusCode);

        // A leaked private key file: blocked, and the certificate revoked for keyCompromise with a new CRL.
        var r = await app.Admin.PostAsJsonAsync("/api/v1/blocked-keys", new { pem = key.PrivateKeyPem, comment = "key file found on a share" });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        var body = JsonDocument.Parse(await r.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(OpenSslSpkiSha256(key.PrivateKeyPem), body.GetProperty("key").GetProperty("spkiSha256").GetString());
        Assert.Equal(new[] { issued.SerialNumber }, body.GetProperty("revokedCertificates").EnumerateArray().Select(e => e.GetString()!).ToArray());
        Assert.Equal("keyCompromise", (await app.GetCertificateAsync(issued.SerialNumber)).RevocationReason);
        var crl = ParsedCrl.Parse(await app.Client.GetByteArrayAsync("/crl/issuing.crl"));
        Assert.Equal(X509RevocationReason.KeyCompromise, crl.Entries[issued.SerialNumber]);
        Assert.Contains("key.blocked", await app.Admin.GetStringAsync("/api/v1/audit"));

        // Reporting it again (as its certificate this time) changes nothing.
        await Http.EnsureStatus(await app.Admin.PostAsJsonAsync("/api/v1/blocked-keys", new { pem = issued.CertificatePem }), HttpStatusCode.OK);

        // A public key reported before any certificate exists: the enrollment is refused.
        var fresh = SubscriberKeyPair.Generate("RSA-2048");
        using (var rsa = (RSA)fresh.Load())
            await Http.EnsureStatus(await app.Admin.PostAsJsonAsync("/api/v1/blocked-keys", new { pem = rsa.ExportSubjectPublicKeyInfoPem() }), HttpStatusCode.Created);
        var token = await app.CreateTokenAsync(email, "signing");
        await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, fresh.CreateCsrPem(email)), HttpStatusCode.UnprocessableEntity);

        foreach (var bad in new[] { "", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "not pem", key.PrivateKeyPem.Replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY") })
        {
            var refused = await app.Admin.PostAsJsonAsync("/api/v1/blocked-keys", new { pem = bad });
            Assert.True(refused.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.UnprocessableEntity, $"{bad}: {refused.StatusCode}");
        }
    }

    [Fact]
    public Task An_enrollment_racing_a_key_compromise_never_leaves_a_valid_certificate_for_the_key() =>
        KeyCompromiseRaces.Enrollment_racing_a_key_compromise(app, "race");

    [Fact]
    public Task Two_key_compromise_revocations_of_one_key_at_once_both_succeed() =>
        KeyCompromiseRaces.Two_revocations_of_one_key_at_once(app, "twice");

    public static TheoryData<string, string> WeakRsaKeys => new()
    {
        { "exponent 3", "65537" },
        { "exponent 65539", "65537" },
        { "small factor", "prime factor" },
        { "close primes", "Fermat" },
        { "ROCA", "ROCA" },
    };

    [Theory]
    [MemberData(nameof(WeakRsaKeys))]
    public async Task Weak_rsa_keys_are_refused_with_the_reason(string weakness, string named)
    {
        var key = weakness switch
        {
            "exponent 3" => RawRsaKey.FromPrimes(RandomPrime(1024, e: 3), RandomPrime(1024, e: 3), 3),
            "exponent 65539" => RawRsaKey.FromPrimes(RandomPrime(1024, e: 65539), RandomPrime(1024, e: 65539), 65539),
            "small factor" => RawRsaKey.FromPrimes(7919, RandomPrime(2048 - 13, e: 65537), 65537), // 7919 has 13 bits
            "close primes" => CloseprimesKey(),
            "ROCA" => RawRsaKey.FromPrimes(RocaPrime(1024), RocaPrime(1024), 65537),
            _ => throw new ArgumentOutOfRangeException(nameof(weakness)),
        };
        Assert.Equal(2048, (int)key.N.GetBitLength());
        var email = $"weak.{weakness.Replace(' ', '-')}@example.test";
        var token = await app.CreateTokenAsync(email, "signing");
        var problem = await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, key.CreateCsrPem(email)), HttpStatusCode.UnprocessableEntity);
        Assert.Contains(named, problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task The_weak_key_csrs_are_otherwise_sound_a_sound_raw_key_is_issued()
    {
        // Proves the refusals above are for the weakness: the same construction with good primes gets a certificate.
        var key = RawRsaKey.FromPrimes(RandomPrime(1024, e: 65537), RandomPrime(1024, e: 65537), 65537);
        const string email = "sound.raw@example.test";
        var token = await app.CreateTokenAsync(email, "signing");
        await app.EnrollAsync(token.Token, key.CreateCsrPem(email));
    }

    [Fact]
    public async Task An_ec_point_off_the_curve_is_refused_as_such()
    {
        const string email = "offcurve@example.test";
        var (_, csr) = SubscriberKeyPair.GenerateWithOpenSsl("EC-P256", $"/CN={email}");
        var der = PemEncoding.Find(csr) is var f ? Convert.FromBase64String(csr[f.Base64Data]) : [];
        // The point is the 65 bytes after "03 42 00" in the SPKI; change y's last byte.
        var at = der.AsSpan().IndexOf(new byte[] { 0x03, 0x42, 0x00, 0x04 });
        der[at + 3 + 64] ^= 0x01;
        var token = await app.CreateTokenAsync(email, "signing");
        var problem = await Http.AssertProblem(await app.PostEnrollmentAsync(token.Token, PemEncoding.WriteString("CERTIFICATE REQUEST", der)),
            HttpStatusCode.UnprocessableEntity);
        Assert.Contains("not a point on its curve", problem.GetProperty("detail").GetString());
    }

    [Fact]
    public void Fresh_keys_never_carry_the_roca_fingerprint_and_roca_keys_always_do()
    {
        for (var i = 0; i < 20; i++)
        {
            using var rsa = RSA.Create(2048);
            var p = rsa.ExportParameters(false);
            Assert.False(WeakKeys.IsRocaFingerprint(new BigInteger(p.Modulus, true, true)));
        }
        Assert.True(WeakKeys.IsRocaFingerprint(RocaPrime(512) * RocaPrime(512)));
    }

    private static RawRsaKey CloseprimesKey()
    {
        var p = RandomPrime(1024, e: 65537);
        var q = NextPrime(p + (BigInteger.One << 40), 65537);
        return RawRsaKey.FromPrimes(p, q, 65537);
    }

    private static string OpenSslSpkiSha256(string privateKeyPem)
    {
        using var dir = new ToolDir("spki");
        var keyFile = dir.Write("key.pem", privateKeyPem);
        Tool.Run("openssl", ["pkey", "-in", keyFile, "-pubout", "-outform", "DER", "-out", dir.File("spki.der")]).EnsureSuccess();
        return Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(dir.File("spki.der"))));
    }

    // --- Building weak keys -------------------------------------------------------------------------------

    private static readonly int[] RocaPrimes =
        [3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167];

    /// <summary>A prime of the form RSALib made: k·M + (65537^a mod M), M = 2·3·5·…·167.</summary>
    private static BigInteger RocaPrime(int bits)
    {
        var m = RocaPrimes.Aggregate(new BigInteger(2), (acc, r) => acc * r);
        var a = new BigInteger(RandomNumberGenerator.GetInt32(1, int.MaxValue));
        var residue = BigInteger.ModPow(65537, a, m);
        var k = RandomBits(bits, topBits: 0b11) / m;
        for (; ; k++)
        {
            var candidate = k * m + residue;
            if (BigInteger.GreatestCommonDivisor(candidate - 1, 65537) == 1 && IsProbablePrime(candidate)) return candidate;
        }
    }

    private static BigInteger RandomPrime(int bits, BigInteger e) => NextPrime(RandomBits(bits, 0b11), e);

    private static BigInteger NextPrime(BigInteger from, BigInteger e)
    {
        var n = from.IsEven ? from + 1 : from;
        while (!(BigInteger.GreatestCommonDivisor(n - 1, e) == 1 && IsProbablePrime(n))) n += 2;
        return n;
    }

    private static BigInteger RandomBits(int bits, int topBits)
    {
        var bytes = RandomNumberGenerator.GetBytes((bits + 7) / 8);
        var n = new BigInteger(bytes, isUnsigned: true, isBigEndian: true) & ((BigInteger.One << bits) - 1);
        var topWidth = (int)new BigInteger(topBits).GetBitLength();
        return n | (new BigInteger(topBits) << (bits - topWidth));
    }

    private static readonly int[] SmallPrimes = Enumerable.Range(3, 2000).Where(n => Enumerable.Range(2, (int)Math.Sqrt(n) - 1).All(d => n % d != 0)).ToArray();

    private static bool IsProbablePrime(BigInteger n)
    {
        foreach (var p in SmallPrimes)
            if (n % p == 0) return n == p;
        // Miller-Rabin with 24 random bases.
        var d = n - 1;
        var s = 0;
        while (d.IsEven) { d >>= 1; s++; }
        for (var i = 0; i < 24; i++)
        {
            var a = 2 + new BigInteger(RandomNumberGenerator.GetBytes(16), isUnsigned: true) % (n - 4);
            var x = BigInteger.ModPow(a, d, n);
            if (x == 1 || x == n - 1) continue;
            var composite = true;
            for (var r = 1; r < s && composite; r++)
            {
                x = BigInteger.ModPow(x, 2, n);
                if (x == n - 1) composite = false;
            }
            if (composite) return false;
        }
        return true;
    }

    /// <summary>An RSA key as plain numbers, signing CSRs itself (PKCS#1 v1.5, SHA-256): .NET and OpenSSL
    /// refuse to load some of these keys at all, and a broken client would not ask them.</summary>
    private sealed class RawRsaKey(BigInteger n, BigInteger e, BigInteger d) : X509SignatureGenerator
    {
        public BigInteger N { get; } = n;

        public static RawRsaKey FromPrimes(BigInteger p, BigInteger q, BigInteger e)
        {
            var phi = (p - 1) * (q - 1);
            return new RawRsaKey(p * q, e, ModInverse(e, phi));
        }

        public string CreateCsrPem(string email)
        {
            var request = new CertificateRequest(new X500DistinguishedName($"CN={email}"), PublicKey, HashAlgorithmName.SHA256);
            return PemEncoding.WriteString("CERTIFICATE REQUEST", request.CreateSigningRequest(this));
        }

        protected override PublicKey BuildPublicKey()
        {
            var key = new AsnWriter(AsnEncodingRules.DER);
            using (key.PushSequence())
            {
                key.WriteInteger(N);
                key.WriteInteger(e);
            }
            var spki = new AsnWriter(AsnEncodingRules.DER);
            using (spki.PushSequence())
            {
                using (spki.PushSequence())
                {
                    spki.WriteObjectIdentifier(Oids.RsaEncryption);
                    spki.WriteNull();
                }
                spki.WriteBitString(key.Encode());
            }
            return PublicKey.CreateFromSubjectPublicKeyInfo(spki.Encode(), out _);
        }

        public override byte[] GetSignatureAlgorithmIdentifier(HashAlgorithmName hashAlgorithm)
        {
            var w = new AsnWriter(AsnEncodingRules.DER);
            using (w.PushSequence())
            {
                w.WriteObjectIdentifier(Oids.Sha256WithRsa);
                w.WriteNull();
            }
            return w.Encode();
        }

        public override byte[] SignData(byte[] data, HashAlgorithmName hashAlgorithm)
        {
            // EMSA-PKCS1-v1_5 (RFC 8017 §9.2): 00 01 FF…FF 00 DigestInfo(SHA-256, H).
            byte[] digestInfoPrefix = [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];
            var k = (int)((N.GetBitLength() + 7) / 8);
            var t = digestInfoPrefix.Concat(SHA256.HashData(data)).ToArray();
            var em = new byte[k];
            em[1] = 0x01;
            em.AsSpan(2, k - t.Length - 3).Fill(0xFF);
            t.CopyTo(em, k - t.Length);
            var s = BigInteger.ModPow(new BigInteger(em, isUnsigned: true, isBigEndian: true), d, N).ToByteArray(isUnsigned: true, isBigEndian: true);
            var signature = new byte[k];
            s.CopyTo(signature, k - s.Length);
            return signature;
        }

        private static BigInteger ModInverse(BigInteger a, BigInteger m)
        {
            BigInteger oldR = a, r = m, oldS = 1, s = 0;
            while (r != 0)
            {
                var quotient = oldR / r;
                (oldR, r) = (r, oldR - quotient * r);
                (oldS, s) = (s, oldS - quotient * s);
            }
            return (oldS % m + m) % m;
        }
    }
}

/// <summary>Races run on SQLite (here) and PostgreSQL (KeyHygienePostgresTests), where writers interleave.</summary>
public static class KeyCompromiseRaces
{
    /// <summary>Enrollment with a key and a keyCompromise revocation of another certificate for that key, at
    /// once: afterwards no valid certificate for the key may exist, whichever committed first.</summary>
    public static async Task Enrollment_racing_a_key_compromise(CertPortalApp app, string prefix)
    {
        for (var round = 0; round < 6; round++)
        {
            var email = $"{prefix}{round}.{Guid.NewGuid().ToString("N")[..6]}@example.test";
            var key = SubscriberKeyPair.Generate("EC-P256");
            var first = await app.EnrollAsync((await app.CreateTokenAsync(email, "signing")).Token, key.CreateCsrPem(email));
            var token = await app.CreateTokenAsync(email, "encryption");
            var csr = key.CreateCsrPem(email);
            var enroll = Task.Run(() => app.PostEnrollmentAsync(token.Token, csr));
            var revoke = Task.Run(() => app.RevokeAsync(first.SerialNumber, "keyCompromise"));
            var (enrolled, revoked) = (await enroll, await revoke);
            await Http.EnsureStatus(revoked, HttpStatusCode.OK);
            if (enrolled.StatusCode == HttpStatusCode.Created)
            {
                var serial = JsonDocument.Parse(await enrolled.Content.ReadAsStringAsync()).RootElement.GetProperty("serialNumber").GetString()!;
                Assert.Equal("keyCompromise", (await app.GetCertificateAsync(serial)).RevocationReason);
            }
            else
            {
                await Http.AssertProblem(enrolled, HttpStatusCode.UnprocessableEntity);
            }
        }
    }

    /// <summary>Each revocation locks the key, then rows: two at once must queue, not deadlock.</summary>
    public static async Task Two_revocations_of_one_key_at_once(CertPortalApp app, string prefix)
    {
        for (var round = 0; round < 4; round++)
        {
            var email = $"{prefix}{round}.{Guid.NewGuid().ToString("N")[..6]}@example.test";
            var key = SubscriberKeyPair.Generate("EC-P256");
            var a = await app.EnrollAsync((await app.CreateTokenAsync(email, "signing")).Token, key.CreateCsrPem(email));
            var b = await app.EnrollAsync((await app.CreateTokenAsync(email, "encryption")).Token, key.CreateCsrPem(email));
            var results = await Task.WhenAll(
                Task.Run(() => app.RevokeAsync(a.SerialNumber, "keyCompromise")),
                Task.Run(() => app.RevokeAsync(b.SerialNumber, "keyCompromise")));
            foreach (var r in results) await Http.EnsureStatus(r, HttpStatusCode.OK);
            foreach (var serial in new[] { a.SerialNumber, b.SerialNumber })
                Assert.Equal("keyCompromise", (await app.GetCertificateAsync(serial)).RevocationReason);
        }
    }
}
