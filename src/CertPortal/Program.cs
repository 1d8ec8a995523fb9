using CertPortal;
using CertPortal.Data;
using CertPortal.Infrastructure;
using CertPortal.Security;

MallocArenas.Bound();
var builder = WebApplication.CreateBuilder(new WebApplicationOptions
{
    // Settings are read once at start (and validated then). Reloading appsettings.json on change needs a recursive file
    // watcher on the content root, which by default holds ./data: every database commit then woke it (inotify events
    // for the WAL file, a file-system check per event), a measurable share of an enrollment's CPU.
    Args = [.. args, "--hostBuilder:reloadConfigOnChange=false"],
    // The top-level wwwroot/ is copied beside the binaries (see CertPortal.csproj).
    WebRootPath = Path.Combine(AppContext.BaseDirectory, "wwwroot"),
});
builder.AddCertPortal();

var app = builder.Build();
try
{
    // `CertPortal accounts ...`: an admin command on the same configuration, then exit (no web server).
    if (AccountsCommand.IsInvocation(args))
        return await AccountsCommand.RunAsync(app, args);
    await app.InitializeCertPortalAsync();
}
catch (DatabaseInUseException e)
{
    // Another process serves this SQLite database: one line for the operator, and an exit code for systemd or a container
    // runtime, rather than a stack trace.
    Console.Error.WriteLine(e.Message);
    return DatabaseInUseException.ExitCode;
}
catch (DatabaseNewerException e)
{
    // An older node started on a database a newer one migrated (a node left behind in an upgrade): one line, no stack trace.
    Console.Error.WriteLine(e.Message);
    return DatabaseNewerException.ExitCode;
}
app.UseCertPortal();
await app.RunAsync();
return 0;

public partial class Program;
