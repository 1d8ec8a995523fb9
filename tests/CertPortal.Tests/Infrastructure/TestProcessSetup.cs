using System.Runtime.CompilerServices;

namespace CertPortal.Tests.Infrastructure;

internal static class TestProcessSetup
{
    /// <summary>The services under test run in this process beside tests that block pool threads on real
    /// programs (openssl, certutil, slapd tools). Without spare threads Kestrel waits for the pool to
    /// grow (one thread per ~0.5 s) and browser steps time out on a loaded 2-core machine.</summary>
    /// <summary>Also reaps the servers (slapd, PostgreSQL, nginx, service nodes) that a crashed earlier
    /// run left behind (<see cref="HelperProcesses"/>).</summary>
    [ModuleInitializer]
    internal static void Initialize()
    {
        ThreadPool.SetMinThreads(64, 64);
        HelperProcesses.ReapOrphans();
    }
}
