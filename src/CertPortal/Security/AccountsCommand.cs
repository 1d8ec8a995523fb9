using System.Text;
using CertPortal.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Storage;

namespace CertPortal.Security;

/// <summary><c>CertPortal accounts add --name alice --role administrator</c> (password on stdin) and
/// <c>CertPortal accounts list</c>: create the first console administrator on the server itself, whether the service
/// runs or not (see <see cref="PrepareAsync"/>), without the admin API key. Whoever can run this can read the data
/// directory anyway. Other settings (<c>--CertPortal:DataDirectory=...</c>, environment variables) work as for the service.</summary>
public static class AccountsCommand
{
    public const string Usage = """
        Usage:
          CertPortal accounts add --name NAME --role ROLE [--display-name NAME]   (reads the password from stdin)
          CertPortal accounts list
        ROLE is administrator, auditor or recovery-agent.
        """;

    public static bool IsInvocation(string[] args) => args.Length > 0 && args[0] == "accounts";

    public static async Task<int> RunAsync(WebApplication app, string[] args)
    {
        if (await PrepareAsync(app.Services) is { } refused)
        {
            Console.Error.WriteLine(refused);
            return DatabaseInUseException.ExitCode;
        }
        await using var scope = app.Services.CreateAsyncScope();
        var accounts = scope.ServiceProvider.GetRequiredService<Accounts>();
        switch (args.ElementAtOrDefault(1))
        {
            case "add":
                var name = Option(args, "--name");
                var role = Option(args, "--role");
                if (name is null || role is null)
                {
                    Console.Error.WriteLine(Usage);
                    return 2;
                }
                var password = ReadPassword();
                if (password is null)
                {
                    Console.Error.WriteLine("No password given: write it to stdin (one line).");
                    return 2;
                }
                var created = await accounts.CreateAsync(new CreateAccountRequest(name, Option(args, "--display-name"), role, password),
                    "cli:" + Environment.UserName, CancellationToken.None);
                if (created.Failure is { } f)
                {
                    Console.Error.WriteLine($"{f.Title} {f.Detail}");
                    return 1;
                }
                var a = created.Value!;
                Console.WriteLine($"Created {a.Role} account '{a.Name}' ({a.Id}). It can sign in to the console at /account/login.");
                Console.WriteLine($"Its API key, shown only now: {a.ApiKey}");
                return 0;
            case "list":
                foreach (var v in await accounts.ListAsync(CancellationToken.None))
                    Console.WriteLine($"{v.Name}\t{v.Role}\t{(v.HasPassword ? "password" : "no password")}\t{(v.DisabledAt is null ? "enabled" : "disabled")}");
                return 0;
            default:
                Console.Error.WriteLine(Usage);
                return 2;
        }
    }

    /// <summary>Alone on the database, prepares it as the service does (migrations included) and, on SQLite, holds the
    /// database's process lock until the command ends, so the service cannot start beside a migration. Beside a running
    /// service on SQLite, whose lock that is, the command still runs: it writes only its own account and audit rows, in
    /// SQLite transactions (safe between processes), which the service reads from the database (API keys and sessions are
    /// cached for 5 s at most). It migrates nothing there (the tables would change beneath the service) and so refuses,
    /// with the reason, unless the service's schema is already this version's. Null when the command may go on.</summary>
    private static async Task<string?> PrepareAsync(IServiceProvider services)
    {
        if (services.GetService<SqliteProcessLock>() is not { } sqlite || sqlite.TryTake())
        {
            await services.PrepareDatabaseAsync();
            return null;
        }
        await using var scope = services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        // Asked without opening the file (opening would create it).
        if (await db.GetService<IRelationalDatabaseCreator>().ExistsAsync() && !(await db.Database.GetPendingMigrationsAsync()).Any()) return null;
        return $"Another CertPortal process holds the SQLite database {sqlite.DatabaseFile}, and its schema is not this version's " +
            "(the service is starting, or is an older version): wait until it has started, or stop it, then run the command again.";
    }

    private static string? Option(string[] args, string name)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    /// <summary>From a pipe: the first line. From a terminal: typed twice without echo.</summary>
    private static string? ReadPassword()
    {
        if (Console.IsInputRedirected)
            return Console.In.ReadLine()?.TrimEnd('\r');
        var first = Prompt("Password: ");
        if (first != Prompt("Repeat the password: "))
        {
            Console.Error.WriteLine("The two passwords are not the same.");
            return null;
        }
        return first;
    }

    private static string Prompt(string text)
    {
        Console.Error.Write(text);
        var sb = new StringBuilder();
        for (var key = Console.ReadKey(intercept: true); key.Key != ConsoleKey.Enter; key = Console.ReadKey(intercept: true))
        {
            if (key.Key == ConsoleKey.Backspace) { if (sb.Length > 0) sb.Length--; }
            else if (!char.IsControl(key.KeyChar)) sb.Append(key.KeyChar);
        }
        Console.Error.WriteLine();
        return sb.ToString();
    }
}
