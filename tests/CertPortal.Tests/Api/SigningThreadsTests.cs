using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CertPortal.Authority;

namespace CertPortal.Tests.Api;

/// <summary>An RSA issuing CA signs on threads of its own, not on the requests' thread-pool workers (a signature holds a
/// core for milliseconds); an ECDSA one signs on the caller's thread. What is issued and refused stays the same.</summary>
public sealed class SigningThreadsTests
{
    [Fact]
    public async Task Work_runs_on_the_signing_threads_and_its_result_and_exceptions_come_back()
    {
        using var threads = new SigningThreads(2);
        var where = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => threads.Run(() =>
            (Thread.CurrentThread.IsThreadPoolThread, Thread.CurrentThread.Name, Environment.CurrentManagedThreadId))));
        Assert.All(where, w => Assert.False(w.IsThreadPoolThread));
        Assert.All(where, w => Assert.Equal("CA signer", w.Name));
        Assert.InRange(where.Select(w => w.CurrentManagedThreadId).Distinct().Count(), 1, 2);
        var refused = await Assert.ThrowsAsync<CertificateLintException>(() => threads.Run<int>(() => throw new CertificateLintException(["a problem"])));
        Assert.Equal(["a problem"], refused.Problems);
    }

    [Fact]
    public async Task Queued_work_is_finished_before_the_threads_end()
    {
        var threads = new SigningThreads(1);
        var gate = new ManualResetEventSlim();
        var first = threads.Run(() => gate.Wait(TimeSpan.FromSeconds(10)));
        var second = threads.Run(() => 2);
        var disposing = Task.Run(threads.Dispose);
        gate.Set();
        await disposing;
        Assert.True(await first);
        Assert.Equal(2, await second);
        Assert.ThrowsAny<InvalidOperationException>(() => { _ = threads.Run(() => 3); });
    }

    [Theory]
    [InlineData("RSA-3072", true)]
    [InlineData("EC-P256", false)]
    public async Task The_issuer_signs_rsa_on_its_threads_and_issues_and_refuses_as_before(string issuingAlgorithm, bool onThreads)
    {
        var options = new CertPortalOptions { DataDirectory = Path.Combine(Path.GetTempPath(), "certportal-signing-threads-unused") };
        options.Ca.KeyPassphrase = "signing-threads-passphrase";
        options.Ca.IssuingKeyAlgorithm = issuingAlgorithm;
        options.Ca.RootKeyAlgorithm = issuingAlgorithm.StartsWith("EC", StringComparison.Ordinal) ? "EC-P384" : "RSA-3072";
        var urls = new CaUrls("http://pki.example.com");
        var (root, issuing) = new CaKeyStore(options, TimeProvider.System).Create(urls);
        using var ca = new CaHierarchy(root, issuing, urls);
        using var issuer = new CertificateIssuer(ca, options);
        Assert.Equal(onThreads, issuer.IssuesOnThreadsOfItsOwn);

        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Assert.True(SubscriberKey.TryAccept(new PublicKey(ec), out var key, out _));
        var now = DateTimeOffset.UtcNow;
        var order = new CertificateOrder("dana@example.com", "", CertificateProfileName.Encryption, key, SerialNumber.New(now), now.AddMinutes(-1), now.AddDays(30));
        var signed = await issuer.IssueAsync(order);
        using var cert = X509CertificateLoader.LoadCertificate(signed.Der);
        Assert.Contains("CN=dana@example.com", cert.Subject, StringComparison.Ordinal);
        using var chain = new X509Chain { ChainPolicy = { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck } };
        chain.ChainPolicy.CustomTrustStore.Add(ca.Root.Certificate);
        chain.ChainPolicy.ExtraStore.Add(ca.Issuing.Certificate);
        Assert.True(chain.Build(cert), string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation)));
        if (onThreads) Assert.Equal(Convert.ToHexString(issuer.Issue(order).Der), Convert.ToHexString(signed.Der)); // PKCS#1 v1.5 is deterministic

        // Linted before it is signed, wherever it is signed: 900 days is longer than the BR allow.
        var tooLong = order with { NotAfter = now.AddDays(900) };
        var refused = await Assert.ThrowsAsync<CertificateLintException>(() => issuer.IssueAsync(tooLong));
        Assert.Contains("validity longer than 825 days", refused.Problems);
    }
}
