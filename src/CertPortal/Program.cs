using CertPortal;
using CertPortal.Security;

var builder = WebApplication.CreateBuilder(new WebApplicationOptions
{
    Args = args,
    // The top-level wwwroot/ is copied beside the binaries (see CertPortal.csproj).
    WebRootPath = Path.Combine(AppContext.BaseDirectory, "wwwroot"),
});
builder.AddCertPortal();

var app = builder.Build();
// `CertPortal accounts ...`: an admin command on the same configuration, then exit (no web server).
if (AccountsCommand.IsInvocation(args))
    return await AccountsCommand.RunAsync(app, args);
await app.InitializeCertPortalAsync();
app.UseCertPortal();
await app.RunAsync();
return 0;

public partial class Program;
