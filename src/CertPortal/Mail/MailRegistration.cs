using CertPortal.Data;
using Microsoft.Extensions.Options;

namespace CertPortal.Mail;

public static class MailRegistration
{
    /// <summary>Mail out (section <c>CertPortal:Mail</c>): off unless Enabled, validated at start either way.</summary>
    public static void AddMail(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<MailOptions>().Bind(builder.Configuration.GetSection(MailOptions.SectionName))
            .PostConfigure<IOptions<CertPortalOptions>>((mail, portal) =>
            {
                if (string.IsNullOrWhiteSpace(mail.OrganizationName)) mail.OrganizationName = portal.Value.Ca.OrganizationName;
            })
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<MailOptions>, MailOptionsValidator>();
        services.AddSingleton(sp => sp.GetRequiredService<IOptions<MailOptions>>().Value);
        services.AddSingleton<MailQueue>();
        services.AddSingleton<ICertificateEvents, CertificateNotices>();
        services.AddScoped<ExpiryReminders>();
        services.AddScoped<Invitations>();
        services.AddScoped<Notifications>();
        services.AddSingleton<MailOutbox>();
        services.AddHostedService(sp => sp.GetRequiredService<MailOutbox>());
    }
}
