using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Escrow;

namespace CertPortal.Tests.Escrow;

/// <summary>The escrow formats on their own: every stored byte is authenticated, and M-1 shares open nothing.</summary>
public sealed class EscrowIntegrityTests
{
    [Fact]
    public void Every_altered_or_missing_byte_of_a_key_envelope_is_detected()
    {
        using var key = RSA.Create(2048);
        using var cert = SelfSigned(key);
        var binding = KeyEnvelopeBinding.ForCertificate(cert);
        var pkcs8 = key.ExportPkcs8PrivateKey();
        using var sealedKey = KeyEnvelope.Seal(pkcs8, binding);
        var dataKey = sealedKey.DataKey.ToArray();
        Assert.Equal(pkcs8, KeyEnvelope.Open(sealedKey.Envelope, dataKey, binding));

        // Version, nonce, tag and ciphertext: one flipped bit anywhere fails authentication, never a wrong key.
        for (var i = 0; i < sealedKey.Envelope.Length; i++)
        {
            foreach (byte bit in new byte[] { 0x01, 0x80 })
            {
                var altered = (byte[])sealedKey.Envelope.Clone();
                altered[i] ^= bit;
                Assert.Throws<EscrowIntegrityException>(() => KeyEnvelope.Open(altered, dataKey, binding));
            }
        }
        Assert.Throws<EscrowIntegrityException>(() => KeyEnvelope.Open(sealedKey.Envelope.AsSpan()[..^1], dataKey, binding));
        Assert.Throws<EscrowIntegrityException>(() => KeyEnvelope.Open(sealedKey.Envelope.AsSpan()[..KeyEnvelope.HeaderSize], dataKey, binding));
        Assert.Throws<EscrowIntegrityException>(() => KeyEnvelope.Open([], dataKey, binding));

        // The same envelope moved onto another certificate's record.
        using var otherKey = RSA.Create(2048);
        using var other = SelfSigned(otherKey);
        Assert.Throws<EscrowIntegrityException>(() => KeyEnvelope.Open(sealedKey.Envelope, dataKey, KeyEnvelopeBinding.ForCertificate(other)));
    }

    [Theory]
    [InlineData(2, 3)]
    [InlineData(3, 5)]
    public void M_minus_1_real_shares_and_any_guess_for_the_last_do_not_open_the_envelope(int m, int n)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var cert = SelfSigned(key);
        var binding = KeyEnvelopeBinding.ForCertificate(cert);
        using var sealedKey = KeyEnvelope.Seal(key.ExportPkcs8PrivateKey(), binding);
        var shares = ShamirSecretSharing.Split(sealedKey.DataKey, m, n);

        for (var guess = 0; guess < 64; guess++)
        {
            var forged = RandomNumberGenerator.GetBytes(shares[0].Length);
            forged[0] = shares[n - 1][0];
            var dataKey = ShamirSecretSharing.Combine([.. shares.Take(m - 1), forged]);
            Assert.Throws<EscrowIntegrityException>(() => KeyEnvelope.Open(sealedKey.Envelope, dataKey, binding));
        }
        Assert.Equal(key.ExportPkcs8PrivateKey(), KeyEnvelope.Open(sealedKey.Envelope, ShamirSecretSharing.Combine(shares.Skip(n - m).ToList()), binding));
    }

    [Fact]
    public void A_share_commitment_accepts_only_that_share_for_that_escrow()
    {
        var escrowId = Guid.NewGuid().ToByteArray();
        var share = ShamirSecretSharing.Split(RandomNumberGenerator.GetBytes(32), 2, 3)[1];
        var commitment = ShareCommitment.Compute(share, escrowId);
        Assert.True(ShareCommitment.Verify(share, commitment, escrowId));
        Assert.False(ShareCommitment.Verify(share, commitment, Guid.NewGuid().ToByteArray()));
        for (var i = 0; i < share.Length; i++)
        {
            var altered = (byte[])share.Clone();
            altered[i] ^= 0x01;
            Assert.False(ShareCommitment.Verify(altered, commitment, escrowId));
        }
        for (var i = 0; i < commitment.Length; i++)
        {
            var altered = (byte[])commitment.Clone();
            altered[i] ^= 0x01;
            Assert.False(ShareCommitment.Verify(share, altered, escrowId));
        }
    }

    [Fact]
    public void M_minus_1_shares_are_distributed_alike_whatever_the_secret()
    {
        // Shamir's secrecy: for two different secrets, the first M-1 = 2 shares (3 of 5) have the same
        // (uniform) distribution. Compare byte histograms of share 1 and share 2 for secrets 0x00 and 0xFF.
        foreach (var secretByte in new byte[] { 0x00, 0xFF })
        {
            var counts = new int[256];
            for (var i = 0; i < 8192; i++)
            {
                var shares = ShamirSecretSharing.Split(Enumerable.Repeat(secretByte, 4).ToArray(), 3, 5);
                foreach (var b in shares[0].AsSpan(1)) counts[b]++;
                foreach (var b in shares[1].AsSpan(1)) counts[b]++;
            }
            // 65536 samples, 256 expected per value. The shares come from the system CSPRNG, which takes no seed,
            // so the bound is set for a false failure rate below one in a billion instead: a chi-square over 255
            // degrees of freedom exceeds 420 with p = 3.4e-10, so both checks together fail by chance with p < 7e-10.
            var chi = counts.Sum(c => (c - 256.0) * (c - 256.0) / 256.0);
            Assert.True(chi < 420, $"secret {secretByte:X2}: chi-square {chi}");
        }
    }

    private static X509Certificate2 SelfSigned(AsymmetricAlgorithm key)
    {
        var request = key switch
        {
            RSA rsa => new CertificateRequest("CN=escrow test", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1),
            ECDsa ec => new CertificateRequest("CN=escrow test", ec, HashAlgorithmName.SHA256),
            _ => throw new ArgumentException("unexpected key type"),
        };
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddDays(1));
    }
}
