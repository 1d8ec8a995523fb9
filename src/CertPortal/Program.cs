using CertPortal;

var builder = WebApplication.CreateBuilder(new WebApplicationOptions
{
    Args = args,
    // The top-level wwwroot/ is copied beside the binaries (see CertPortal.csproj).
    WebRootPath = Path.Combine(AppContext.BaseDirectory, "wwwroot"),
});
builder.AddCertPortal();

var app = builder.Build();
await app.InitializeCertPortalAsync();
app.UseCertPortal();
app.Run();

public partial class Program;
