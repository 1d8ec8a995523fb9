using CertPortal.Data;

namespace CertPortal.Gal;

public static class DirectoryRegistration
{
    /// <summary>LDAP publishing, active only when <c>CertPortal:Directory:Url</c> is set; otherwise the REST
    /// directory alone. Options are read lazily (tests and hosts may add configuration late) and validated
    /// at start: bad settings stop start-up with the setting's name.</summary>
    public static void AddDirectoryPublishing(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<DirectoryOptions>().Bind(builder.Configuration.GetSection(DirectoryOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<Microsoft.Extensions.Options.IValidateOptions<DirectoryOptions>, DirectoryOptionsValidator>();
        services.AddSingleton(sp => sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<DirectoryOptions>>().Value);
        services.AddSingleton(sp => new LdapDirectory(sp.GetRequiredService<DirectoryOptions>(), sp.GetRequiredService<ILogger<LdapDirectory>>()));
        services.AddScoped<DirectoryPublisher>();
        services.AddSingleton<ICertificateEvents, DirectoryOutboxEvents>();
        services.AddSingleton<DirectoryOutbox>();
        services.AddHostedService(sp => sp.GetRequiredService<DirectoryOutbox>());

        services.AddOptions<DirectoryEnrollmentOptions>().Bind(builder.Configuration.GetSection(DirectoryEnrollmentOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<Microsoft.Extensions.Options.IValidateOptions<DirectoryEnrollmentOptions>, DirectoryEnrollmentOptionsValidator>();
        services.AddSingleton(sp => sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<DirectoryEnrollmentOptions>>().Value);
        services.AddScoped<DirectoryEnrollment>();
        services.AddHostedService<DirectoryEnrollmentWorker>();
    }

    private sealed class DirectoryOptionsValidator : Microsoft.Extensions.Options.IValidateOptions<DirectoryOptions>
    {
        public Microsoft.Extensions.Options.ValidateOptionsResult Validate(string? name, DirectoryOptions options) =>
            options.Validate() is { Count: > 0 } errors
                ? Microsoft.Extensions.Options.ValidateOptionsResult.Fail(errors)
                : Microsoft.Extensions.Options.ValidateOptionsResult.Success;
    }
}
