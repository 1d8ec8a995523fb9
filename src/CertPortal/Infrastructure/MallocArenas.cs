using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;

namespace CertPortal.Infrastructure;

/// <summary>Runs the service with glibc's malloc arenas bounded to <see cref="Max"/>, as MALLOC_ARENA_MAX=2 in its
/// environment would. glibc gives each thread that allocates an arena of its own, up to 8 per core (15 on 2 cores),
/// and an arena keeps what is freed to it: over a 30-minute mixed run each kept CRL-sized blocks (the CRL's signing
/// and encoding copies in native memory) and the RSS rose ~1 MiB a minute, while a service started with
/// MALLOC_ARENA_MAX=2 stayed flat and ended 32-38 MiB lower (docs/benchmark-history.md, "Memory, tenth pass"; the
/// request rows with and without the bound: "Memory, eleventh pass"). Done by the service itself so that it holds
/// however it is started (dotnet run, systemd, the container), not only where the environment was prepared.</summary>
internal static partial class MallocArenas
{
    public const int Max = 2;
    public const string Variable = "MALLOC_ARENA_MAX";

    // malloc.h: M_ARENA_MAX
    private const int ArenaMaxParameter = -8;

    /// <summary>Call first in Main. mallopt alone comes too late: by Main the runtime's own threads (the GC's, the
    /// finalizer, the JIT's) have each made an arena (8 of 15 on 2 cores), and an arena is never given up. So the
    /// process executes itself again, same program, arguments and environment plus MALLOC_ARENA_MAX=2, which glibc
    /// reads at its first allocation; the process id, open descriptors and working directory stay (~0.2 s more
    /// start-up). With a debugger attached, or if that fails, mallopt bounds the arenas made from then on. Leaves
    /// glibc's setting alone where the operator made one (MALLOC_ARENA_MAX, or glibc.malloc.arena_max in
    /// GLIBC_TUNABLES) and where the entry point runs inside another program (a test host, dotnet ef), and does
    /// nothing without glibc (musl has neither libc.so.6 nor per-thread arenas).</summary>
    public static void Bound()
    {
        if (Environment.GetEnvironmentVariable(Variable) is not null
            || Environment.GetEnvironmentVariable("GLIBC_TUNABLES")?.Contains("glibc.malloc.arena_max", StringComparison.Ordinal) == true
            || Assembly.GetEntryAssembly() != typeof(MallocArenas).Assembly)
            return;
        try
        {
            _ = Mallopt(ArenaMaxParameter, Max);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return; // not glibc
        }
        if (Debugger.IsAttached)
            return;
        string?[] arguments = [.. NulSeparated("/proc/self/cmdline"), null];
        string?[] environment = [.. NulSeparated("/proc/self/environ"), $"{Variable}={Max}", null];
        // Returns only if it failed; the process then goes on with mallopt's bound.
        _ = Execve("/proc/self/exe", arguments, environment);
    }

    // Each entry ends with a NUL (an empty argument is one too).
    private static string[] NulSeparated(string path)
    {
        var text = Encoding.UTF8.GetString(File.ReadAllBytes(path));
        return text.Length == 0 ? [] : (text.EndsWith('\0') ? text[..^1] : text).Split('\0');
    }

    [LibraryImport("libc.so.6", EntryPoint = "mallopt")]
    private static partial int Mallopt(int parameter, int value);

    [LibraryImport("libc.so.6", EntryPoint = "execve", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Execve(string path, string?[] arguments, string?[] environment);
}
