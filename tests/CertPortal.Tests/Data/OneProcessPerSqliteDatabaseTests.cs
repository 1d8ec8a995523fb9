using System.Net;
using System.Net.Http.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.Data.Sqlite;

namespace CertPortal.Tests.Data;

/// <summary>SQLite serves one process: a second one started on the same database (a second `dotnet run`, a unit started
/// twice, a container restarted while the old one drains) refuses to start, at once, saying so, and changes nothing;
/// the first goes on serving; once the first is gone, even by SIGKILL, the next one starts.</summary>
public sealed class OneProcessPerSqliteDatabaseTests
{
    private static readonly Dictionary<string, string> Sqlite = [];

    [Fact]
    public async Task A_second_process_is_refused_at_once_with_one_line_and_writes_nothing_and_after_a_sigkill_the_next_one_starts()
    {
        await using var first = new CertPortalNode("first", Sqlite);
        first.Start();
        await first.WaitReadyAsync();
        using var admin = first.Client(admin: true);
        var token = await CreateTokenAsync(admin, "one-process@example.test");

        // The second process finds the first frozen (SIGSTOP): whatever changes in the data directory meanwhile is its doing.
        await using var second = new CertPortalNode("second", Sqlite, first.DataDirectory);
        var before = Snapshot(first.DataDirectory);
        first.Freeze();
        int exitCode;
        try
        {
            second.Start();
            exitCode = await second.WaitForExitAsync(seconds: 60);
        }
        finally
        {
            first.Thaw();
        }
        Assert.Equal(DatabaseInUseException.ExitCode, exitCode);
        var line = Assert.Single(second.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.Contains(Path.Combine(first.DataDirectory, "certportal.db"), line);
        Assert.Contains("Stop that process first", line);
        Assert.Contains("PostgreSQL", line);
        Assert.Equal(before, Snapshot(first.DataDirectory));

        // The first serves on, reading and writing.
        Assert.Equal(HttpStatusCode.OK, (await first.Client().GetAsync("/healthz")).StatusCode);
        await CreateTokenAsync(admin, "still-serving@example.test");

        // SIGKILL leaves no stale lock: the next process starts on the same files and has what the first committed.
        first.Kill();
        await using var next = new CertPortalNode("next", Sqlite, first.DataDirectory);
        next.Start();
        await next.WaitReadyAsync();
        var csr = SubscriberKeyPair.Generate("EC-P256").CreateCsrPem("one-process@example.test");
        var enrolled = await next.Client().PostAsJsonAsync("/api/v1/enrollments", new { token, csr });
        await Http.EnsureStatus(enrolled, HttpStatusCode.Created);
    }

    [Fact]
    public async Task A_second_host_in_the_same_process_is_refused_and_a_stopped_or_failed_host_lets_go_of_the_database()
    {
        var app = new PassphraseApp();
        await app.InitializeAsync();
        try
        {
            // Taken the way the service's entry point takes it (bench tools and admin commands too): refused before it writes.
            var refused = await Assert.ThrowsAsync<DatabaseInUseException>(() => InitializeSecondHostAsync(app.DataDirectory));
            Assert.Equal(Path.Combine(app.DataDirectory, "certportal.db"), refused.DatabaseFile);
            Assert.Equal(HttpStatusCode.OK, (await app.Client.GetAsync("/healthz")).StatusCode);

            // A stopped host has let go: a restart in this process (as crash and restart tests do) takes it again.
            await app.StopAsync();
            app.Start();
            Assert.Equal(HttpStatusCode.OK, (await app.Client.GetAsync("/healthz")).StatusCode);

            // A host whose start failed after taking the lock (here: a passphrase that does not open the CA) lets go too.
            await app.StopAsync();
            app.Passphrase = "not-the-ca-passphrase-0123";
            Assert.Contains("CertPortal:Ca:KeyPassphrase", Record.Exception(app.Start)?.ToString());
            app.Passphrase = PassphraseApp.Right;
            app.Start();
            Assert.Equal(HttpStatusCode.OK, (await app.Client.GetAsync("/healthz")).StatusCode);
        }
        finally
        {
            await app.DisposeAsync();
        }
    }

    [Fact]
    public void The_lock_is_one_holder_at_a_time_and_an_in_memory_database_needs_none()
    {
        var dir = TempDir.Create("certportal-lock");
        try
        {
            var file = Path.Combine(dir, "sub", "certportal.db");
            using var a = new SqliteProcessLock($"Data Source={file};Default Timeout=60");
            using var b = new SqliteProcessLock($"Data Source={file}");
            Assert.Equal(Path.Combine(dir, "sub", ".certportal.db.lock"), a.LockFile);
            Assert.True(a.TryTake());
            Assert.True(a.TryTake()); // kept
            Assert.False(b.TryTake());
            Assert.Equal(file, Assert.Throws<DatabaseInUseException>(b.Take).DatabaseFile);
            Assert.False(File.Exists(file), "the lock does not create the database");
            a.Dispose();
            Assert.True(b.TryTake());

            using var memory = new SqliteProcessLock("Data Source=:memory:");
            Assert.Null(memory.LockFile);
            memory.Take();
            using var shared = new SqliteProcessLock("Data Source=certportal;Mode=Memory;Cache=Shared");
            Assert.Null(shared.LockFile);
        }
        finally
        {
            TempDir.Delete(dir);
        }
    }

    [Fact]
    public void A_uri_data_source_locks_the_file_sqlite_opens()
    {
        var dir = TempDir.Create("certportal-uri");
        try
        {
            var file = Path.Combine(dir, "my data", "certportal.db");
            Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            var encoded = file.Replace(" ", "%20", StringComparison.Ordinal);
            string[] spellings =
            [
                $"Data Source={file}",
                $"Data Source=file:{encoded}",
                $"Data Source=file://{encoded}?cache=private",
                $"Data Source=file://localhost{encoded}#fragment",
            ];
            foreach (var connectionString in spellings)
            {
                // The oracle: the file SQLite itself opened for that connection string.
                Assert.Equal(file, OpenedFile(connectionString));
                Assert.Equal(file, SqliteDatabaseFile.Of(connectionString));
            }

            // However each one spells it, the second holder is refused.
            using var plain = new SqliteProcessLock(spellings[0]);
            plain.Take();
            foreach (var connectionString in spellings.Skip(1))
            {
                using var other = new SqliteProcessLock(connectionString);
                Assert.Equal(Path.Combine(dir, "my data", ".certportal.db.lock"), other.LockFile);
                Assert.False(other.TryTake(), connectionString);
            }

            // In-memory URIs open no file, so nothing to lock; a remote host is an error, as SQLite would refuse it.
            Assert.Null(SqliteDatabaseFile.Of("Data Source=file::memory:"));
            Assert.Null(SqliteDatabaseFile.Of("Data Source=file:certportal?mode=memory&cache=shared"));
            Assert.Null(SqliteDatabaseFile.Of("Data Source="));
            Assert.Contains("example.org", Assert.Throws<ArgumentException>(() => SqliteDatabaseFile.Of("Data Source=file://example.org/x.db")).Message);
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            TempDir.Delete(dir);
        }
    }

    private static string OpenedFile(string connectionString)
    {
        using var connection = new SqliteConnection(connectionString + ";Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT file FROM pragma_database_list WHERE name = 'main'";
        return (string)command.ExecuteScalar()!;
    }

    [Fact]
    public void The_accounts_command_beside_another_holder_migrates_nothing_and_says_why()
    {
        // A holder of the lock on a database not yet at this version's schema: a service that is starting, or an older one.
        var dir = TempDir.Create("certportal-accounts");
        try
        {
            using var holder = new SqliteProcessLock($"Data Source={Path.Combine(dir, "certportal.db")}");
            holder.Take();
            var r = Tool.Run("dotnet", [Path.Combine(AppContext.BaseDirectory, "CertPortal.dll"), "accounts", "list",
                $"--CertPortal:DataDirectory={dir}", "--CertPortal:Ca:KeyPassphrase=test-ca-passphrase-0123", "--Logging:LogLevel:Default=Warning"],
                workingDirectory: dir, timeoutSeconds: 120);
            Assert.Equal(DatabaseInUseException.ExitCode, r.ExitCode);
            Assert.Contains("its schema is not this version's", r.Stderr);
            Assert.Equal(".certportal.db.lock", Path.GetFileName(Assert.Single(Directory.GetFileSystemEntries(dir))));
        }
        finally
        {
            TempDir.Delete(dir);
        }
    }

    [Fact]
    public async Task With_file_locking_switched_off_the_service_starts_and_warns_that_nothing_guards_the_database()
    {
        await using var node = new CertPortalNode("unlocked", Sqlite);
        node.Environment["DOTNET_SYSTEM_IO_DISABLEFILELOCKING"] = "1";
        node.Start();
        await node.WaitReadyAsync();
        Assert.Contains(node.Output.Split('\n'), line => line.Contains("File locking is switched off", StringComparison.Ordinal) &&
            line.Contains(Path.Combine(node.DataDirectory, "certportal.db"), StringComparison.Ordinal));

        // And without the setting, no such warning.
        await using var locked = new CertPortalNode("locked", Sqlite);
        locked.Start();
        await locked.WaitReadyAsync();
        Assert.DoesNotContain("File locking", locked.Output, StringComparison.Ordinal);
    }

    private static async Task<string> CreateTokenAsync(HttpClient admin, string email)
    {
        var r = await admin.PostAsJsonAsync("/api/v1/tokens", new { email, displayName = "One Process", profile = "signing", validHours = 1 });
        await Http.EnsureStatus(r, HttpStatusCode.Created);
        return (await r.Content.ReadFromJsonAsync<TokenResponse>(Http.Json))!.Token;
    }

    private static async Task InitializeSecondHostAsync(string dataDirectory)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = [$"--CertPortal:DataDirectory={dataDirectory}", $"--CertPortal:AdminApiKey={CertPortalApp.AdminKey}",
                $"--CertPortal:Ca:KeyPassphrase={PassphraseApp.Right}", "--Logging:LogLevel:Default=Warning"],
        });
        builder.AddCertPortal();
        await using var second = builder.Build();
        await second.InitializeCertPortalAsync();
    }

    /// <summary>Every file and directory under <paramref name="dir"/> (and itself) with its size and last write.</summary>
    private static string[] Snapshot(string dir) =>
        [.. new DirectoryInfo(dir).EnumerateFileSystemInfos("*", SearchOption.AllDirectories).Append(new DirectoryInfo(dir))
            .Select(f => $"{f.FullName} {(f as FileInfo)?.Length} {f.LastWriteTimeUtc.Ticks}").Order(StringComparer.Ordinal)];

    private sealed class PassphraseApp : CertPortalApp
    {
        public const string Right = "test-ca-passphrase-0123";
        public string Passphrase { get; set; } = Right;
        protected override IDictionary<string, string?> Settings => new Dictionary<string, string?> { ["Ca:KeyPassphrase"] = Passphrase };
    }
}
