using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.FastPath;

/// <summary>A token creation and an enrollment do not rent the request's pooled EF Core context: they read their token
/// on a connection of their own and write through the group writer, and renting and resetting a context for nothing was
/// 1.2-1.5 % of an enrollment's CPU. The paths that read through the context (collecting a certificate already issued,
/// listing tokens) still get it.</summary>
public sealed class RequestContextTests(RequestContextTests.CountingApp app) : IClassFixture<RequestContextTests.CountingApp>
{
    /// <summary>The service, counting per request ("METHOD path") the contexts its requests' services hand out.</summary>
    public sealed class CountingApp : CertPortalApp
    {
        public ConcurrentDictionary<string, int> Rented { get; } = new();

        protected override void ConfigureServices(IServiceCollection services)
        {
            services.AddHttpContextAccessor();
            var pooled = services.Single(d => d.ServiceType == typeof(CertPortalDbContext));
            services.Remove(pooled);
            services.AddScoped(sp =>
            {
                if (sp.GetRequiredService<IHttpContextAccessor>().HttpContext?.Request is { } r)
                    Rented.AddOrUpdate($"{r.Method} {r.Path}", 1, (_, n) => n + 1);
                return (CertPortalDbContext)pooled.ImplementationFactory!(sp);
            });
        }
    }

    [Fact]
    public async Task Token_creation_and_enrollment_rent_no_context_and_a_repeat_still_collects_through_it()
    {
        var email = $"context.{Guid.NewGuid().ToString("N")[..8]}@example.test";
        var token = await app.CreateTokenAsync(email, "signing");
        var key = SubscriberKeyPair.Generate("EC-P256");
        var csr = key.CreateCsrPem(email);
        var first = await app.EnrollAsync(token.Token, csr);
        Assert.Empty(app.Rented);

        // The same request again: the certificate already issued, read through the context.
        var again = await app.PostEnrollmentAsync(token.Token, csr);
        await Http.EnsureStatus(again, HttpStatusCode.OK);
        Assert.Equal(first.SerialNumber, (await again.Content.ReadFromJsonAsync<EnrollmentResponse>(Http.Json))!.SerialNumber);
        Assert.True(app.Rented.GetValueOrDefault("POST /api/v1/enrollments") > 0);

        var listed = await app.Admin.GetAsync($"/api/v1/tokens?email={Uri.EscapeDataString(email)}");
        await Http.EnsureStatus(listed, HttpStatusCode.OK);
        Assert.Contains("\"used\"", await listed.Content.ReadAsStringAsync());
        Assert.True(app.Rented.GetValueOrDefault("GET /api/v1/tokens") > 0);
    }
}
