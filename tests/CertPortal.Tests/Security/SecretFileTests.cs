using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using CertPortal.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace CertPortal.Tests.Security;

/// <summary>The generated secrets' files (the CA key passphrase, the admin API key) when nothing is configured.</summary>
public sealed class SecretFileTests : IDisposable
{
    private readonly string _dir = TempDir.Create("secret-file");

    public void Dispose() => TempDir.Delete(_dir);

    [Fact]
    public void A_secret_is_made_once_kept_private_and_read_back()
    {
        var path = Path.Combine(_dir, "ca-key-passphrase");
        var made = SecretFile.ReadOrCreate(null, path, "CA key passphrase", 12, NullLogger.Instance);
        Assert.True(made.Length >= 32);
        Assert.Equal(made, SecretFile.ReadOrCreate(null, path, "CA key passphrase", 12, NullLogger.Instance));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        Assert.Equal("configured secret", SecretFile.ReadOrCreate("configured secret", path, "CA key passphrase", 12, NullLogger.Instance));
    }

    [Fact]
    public async Task Starts_racing_to_make_a_secret_all_get_the_one_in_the_file()
    {
        // Two nodes sharing a data directory (or one node's admin API key, made outside the start-up lock) create the file at
        // once: a rename over it kept the last writer's secret in the file while the others went on with their own.
        for (var round = 0; round < 20; round++)
        {
            var path = Path.Combine(_dir, $"admin-api-key-{round}");
            using var start = new Barrier(8);
            var secrets = Enumerable.Range(0, 8).Select(_ => Task.Factory.StartNew(() =>
            {
                start.SignalAndWait();
                return SecretFile.ReadOrCreate(null, path, "admin API key", 24, NullLogger.Instance);
            }, TaskCreationOptions.LongRunning)).ToArray();
            var made = await Task.WhenAll(secrets);
            var inFile = (await File.ReadAllTextAsync(path)).Trim();
            Assert.All(made, s => Assert.Equal(inFile, s));
            Assert.Equal([Path.GetFileName(path)], Directory.GetFiles(_dir, $"admin-api-key-{round}*").Select(Path.GetFileName));
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("\n")]
    [InlineData("short\n")]
    public void A_file_emptied_or_cut_short_stops_the_start_naming_it(string contents)
    {
        // Read as it was, an empty file sealed the CA with an empty passphrase (and made an empty admin API key).
        var path = Path.Combine(_dir, "ca-key-passphrase");
        File.WriteAllText(path, contents);
        var e = Assert.Throws<InvalidOperationException>(() => SecretFile.ReadOrCreate(null, path, "CA key passphrase", 12, NullLogger.Instance));
        Assert.Contains(path, e.Message);
        Assert.Equal(contents, File.ReadAllText(path)); // left for the operator to restore
    }

    [Fact]
    public async Task A_secret_file_and_then_its_directory_reach_the_disk_before_it_is_used()
    {
        // A rename is a change to the directory: without the directory's fsync a crash can lose the file whose secret
        // already sealed the CA. strace watches this process while it writes one.
        Tool.Require("strace", "strace");
        var path = Path.Combine(_dir, "admin-api-key");
        var trace = Path.Combine(_dir, "strace.log");
        using (var strace = Process.Start(new ProcessStartInfo("strace",
               ["-f", "-p", Environment.ProcessId.ToString(CultureInfo.InvariantCulture), "-o", trace,
                "-e", "trace=open,openat,fsync,fdatasync,rename,renameat,renameat2,link,linkat"]) { RedirectStandardError = true })!)
        {
            // "Process N attached with M threads": every thread, this one included, is traced from here on.
            var attached = await strace.StandardError.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(attached?.Contains("attached", StringComparison.Ordinal) == true, $"strace did not attach: {attached}");
            SecretFile.WriteAtomically(path, "secret\n");
            Tool.Run("kill", ["-INT", strace.Id.ToString(CultureInfo.InvariantCulture)]).EnsureSuccess();
            await strace.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
        // With several threads strace splits a call that another thread interrupts: "fsync(521 <unfinished ...>", later
        // "<... fsync resumed>) = 0" from the same thread. Joined, at the place where it returned.
        var calls = new List<string>();
        var unfinished = new Dictionary<string, string>();
        foreach (var line in File.ReadAllLines(trace))
        {
            var parts = Regex.Match(line, @"^(\d+)\s+(.*)$");
            var (thread, call) = parts.Success ? (parts.Groups[1].Value, parts.Groups[2].Value) : ("", line);
            if (call.EndsWith(" <unfinished ...>", StringComparison.Ordinal))
            {
                unfinished[thread] = call[..^" <unfinished ...>".Length];
                continue;
            }
            var resumed = Regex.Match(call, @"^<\.\.\. \w+ resumed>(.*)$");
            if (resumed.Success && unfinished.Remove(thread, out var start)) call = start + resumed.Groups[1].Value;
            calls.Add(call);
        }
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        int Index(string pattern, int after = -1) =>
            calls.FindIndex(after + 1, l => Regex.IsMatch(l, pattern)) is var i and >= 0 ? i
                : throw new Xunit.Sdk.XunitException($"no {pattern} after call {after} in:\n{string.Join('\n', calls.Where(c => c.Contains(_dir, StringComparison.Ordinal) || c.StartsWith("fsync", StringComparison.Ordinal)))}");
        string Fd(int call) => Regex.Match(calls[call], @"= (\d+)$").Groups[1].Value;

        var openTemporary = Index($@"open(at)?\(.*""{Regex.Escape(path)}\.tmp-[0-9a-f]+"", .*O_CREAT.*= \d+$");
        var renamed = Index($@"rename(at2?)?\(.*""{Regex.Escape(path)}\.tmp-[0-9a-f]+"", .*""{Regex.Escape(path)}""", openTemporary);
        Assert.InRange(Index($@"f(data)?sync\({Fd(openTemporary)}\)\s+= 0", openTemporary), openTemporary, renamed);
        var openDirectory = Index($@"open(at)?\(.*""{Regex.Escape(dir)}"", O_RDONLY.*= \d+$", renamed);
        Index($@"fsync\({Fd(openDirectory)}\)\s+= 0", openDirectory);
    }
}
