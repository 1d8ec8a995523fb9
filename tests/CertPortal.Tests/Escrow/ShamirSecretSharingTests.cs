using CertPortal.Escrow;

namespace CertPortal.Tests.Escrow;

/// <summary>Shamir's secret sharing on its own.</summary>
public sealed class ShamirSecretSharingTests
{
    [Theory]
    [InlineData(2, 3)]
    [InlineData(3, 5)]
    public void Every_M_subset_reconstructs_and_no_smaller_subset_does(int m, int n)
    {
        var secret = System.Security.Cryptography.RandomNumberGenerator.GetBytes(32);
        var shares = ShamirSecretSharing.Split(secret, m, n);
        foreach (var subset in Subsets(n, m))
            Assert.Equal(secret, ShamirSecretSharing.Combine(subset.Select(i => shares[i]).ToList()));
        foreach (var subset in Subsets(n, m - 1).Where(s => s.Count >= 2))
            Assert.NotEqual(secret, ShamirSecretSharing.Combine(subset.Select(i => shares[i]).ToList()));
    }

    [Fact]
    public void Share_bytes_are_uniform_whatever_the_secret()
    {
        // The same all-zero secret split 16384 times: each y byte of a share must look uniform over 0..255.
        var counts = new int[256];
        var secret = new byte[4];
        for (var i = 0; i < 16384; i++)
            foreach (var b in ShamirSecretSharing.Split(secret, 2, 3)[0].AsSpan(1)) counts[b]++;
        // 65536 samples, 256 expected per value. The coefficients come from the system CSPRNG, which takes no
        // seed, so the bound is set for a false failure rate below one in a billion instead: a chi-square over
        // 255 degrees of freedom exceeds 420 with p = 3.4e-10 (upper regularized incomplete gamma Q(127.5, 210)).
        var chi = counts.Sum(c => (c - 256.0) * (c - 256.0) / 256.0);
        Assert.True(chi < 420, $"chi-square {chi}");
    }

    [Fact]
    public void Bad_parameters_and_duplicate_shares_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ShamirSecretSharing.Split(new byte[4], 1, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => ShamirSecretSharing.Split(new byte[4], 4, 3));
        var shares = ShamirSecretSharing.Split(new byte[4], 2, 3);
        Assert.Throws<ArgumentException>(() => ShamirSecretSharing.Combine([shares[0], shares[0]]));
    }

    private static IEnumerable<List<int>> Subsets(int n, int k)
    {
        if (k == 0) { yield return []; yield break; }
        for (var first = 0; first < n; first++)
            foreach (var rest in Subsets(n, k - 1).Where(r => r.All(x => x > first)))
                yield return [first, .. rest];
    }
}
