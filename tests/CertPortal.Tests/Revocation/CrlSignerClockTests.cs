using CertPortal.Revocation;

namespace CertPortal.Tests.Revocation;

/// <summary>The signer's wait for the second after the previous CRL, on the real clock: a CRL signed right after it must
/// get a later thisUpdate (seen as two CRLs with one thisUpdate in the three-node cluster test).</summary>
public sealed class CrlSignerClockTests
{
    [Fact]
    public async Task Waiting_for_the_second_after_the_previous_crl_ends_in_a_later_second()
    {
        for (var i = 0; i < 8; i++)
        {
            var previous = TimeProvider.System.GetUtcNow();
            Assert.True(await CrlSigner.WaitForSecondAfterAsync(TimeProvider.System, previous, CancellationToken.None));
            var after = TimeProvider.System.GetUtcNow();
            Assert.True(CrlSigner.WholeSeconds(after) > CrlSigner.WholeSeconds(previous),
                $"the wait for the second after {previous:HH:mm:ss.fffffff} ended at {after:HH:mm:ss.fffffff}");
        }
    }
}
