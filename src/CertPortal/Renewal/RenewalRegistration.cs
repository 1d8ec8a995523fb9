using Microsoft.Extensions.Options;

namespace CertPortal.Renewal;

public static class RenewalRegistration
{
    /// <summary>Self-service renewal (section <c>CertPortal:Renewal</c>), validated at start.</summary>
    public static void AddRenewal(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<RenewalOptions>().Bind(builder.Configuration.GetSection(RenewalOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<RenewalOptions>, RenewalOptionsValidator>();
        services.AddSingleton(sp => sp.GetRequiredService<IOptions<RenewalOptions>>().Value);
        services.AddScoped<RenewalService>();
        services.AddScoped<ServerKeyRenewal>();
        services.AddSingleton<SupersedeWorker>();
        services.AddHostedService(sp => sp.GetRequiredService<SupersedeWorker>());
    }
}
