using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Data;

/// <summary>On SQLite the CRL signer reads the revoked certificates in serial ranges, one per core at once. Serials begin with
/// their time of issue, so the ranges follow where the revoked serials lie, not a fixed split of the first byte.</summary>
public sealed class RevokedCertificatesTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    [Fact]
    public async Task The_revoked_certificates_are_read_in_parts_that_split_their_serials_each_once_and_in_order()
    {
        var revoked = new List<string>();
        for (var i = 0; i < 12; i++)
        {
            var (issued, _) = await app.IssueAsync($"parts{i}.{Guid.NewGuid():N}@example.test", "signing");
            await Http.EnsureStatus(await app.RevokeAsync(issued.SerialNumber, "superseded"), System.Net.HttpStatusCode.OK);
            revoked.Add(issued.SerialNumber);
        }

        await using var scope = app.Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        var parts = new[] { new List<string>(), new List<string>() };
        await RevokedCertificates.ReadPartsAsync(db, DateTimeOffset.UtcNow, 2,
            part => (serial, _, _) => parts[part].Add(Convert.ToHexString(serial)), CancellationToken.None);

        var read = parts[0].Concat(parts[1]).ToList();
        Assert.Equal(revoked.Order(StringComparer.Ordinal), read);
        // Issued over this test's time, they span more than one part (a split of the first byte put them all in the first).
        Assert.NotEmpty(parts[0]);
        Assert.NotEmpty(parts[1]);
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData("019AEE0B2D6C1F0011223344556677AA", "019AEE0B2D6C1F0011223344556677AA")]
    [InlineData("019AEE0B2D6C1F0011223344556677AA", "019AEE0B2D6C1F00FFEEDDCCBBAA9988")]
    [InlineData("0123", "7F")]
    [InlineData("019AEE0B2D6C1F0011223344556677AA", "7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF")]
    [InlineData("019AEE0B2D6C1F0011223344556677AA", "not hexadecimal")]
    public void The_bounds_of_the_parts_never_decrease_and_leave_the_ends_open(string? first, string? last)
    {
        foreach (var parts in new[] { 2, 3, 8 })
        {
            var bounds = RevokedCertificates.Bounds((first, last), parts);
            Assert.Equal(parts + 1, bounds.Length);
            Assert.Null(bounds[0]);
            Assert.Null(bounds[parts]);
            for (var i = 1; i < parts - 1; i++) Assert.True(string.CompareOrdinal(bounds[i], bounds[i + 1]) <= 0);
        }
    }

    [Fact]
    public void Serials_issued_over_a_minute_are_split_inside_that_minute()
    {
        var first = "019AEE0B2D6C1F0011223344556677AA"; // 2026-12-05 13:58
        var last = "019AEE0C17CC0000FFEEDDCCBBAA9988";  // a minute later
        var middle = RevokedCertificates.Bounds((first, last), 2)[1]!;
        Assert.True(string.CompareOrdinal(first, middle) < 0 && string.CompareOrdinal(middle, last) < 0, middle);
        Assert.StartsWith("019AEE0B", middle, StringComparison.Ordinal);
    }
}
