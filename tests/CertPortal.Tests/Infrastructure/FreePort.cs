using System.Net;
using System.Net.Sockets;

namespace CertPortal.Tests.Infrastructure;

/// <summary>Free loopback TCP ports for the servers the tests start (the service, slapd, PostgreSQL,
/// nginx; the bench links this file too). Asking the kernel for a free port and starting a server on it
/// later is a race: between the probe closing and the server binding, another process (a parallel test
/// class, another test run on the same machine) can take the port. So a server is started through
/// <see cref="StartAsync"/>, which retries on fresh ports when the start failed because a port was taken.
/// (Letting each server bind port 0 and report it would avoid the race too, but slapd and PostgreSQL
/// cannot report the port they got, and the service must know its own URL before it starts.)</summary>
public static class FreePort
{
    private const int Attempts = 5;

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, bool> HandedOut = new();

    /// <summary>A port that was free a moment ago, and never handed out before in this process; start the server through
    /// <see cref="StartAsync"/> or <see cref="Start"/>. The kernel gives a port just released to the next bind to port 0 as readily as
    /// any other, so two test classes constructing their servers at once were seen to get the same one: the second server failed to
    /// bind, and its test, waiting for the port to answer, went on with the first's.</summary>
    public static int Next()
    {
        while (true)
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            if (HandedOut.TryAdd(port, true)) return port;
        }
    }

    /// <summary>Runs <paramref name="start"/> with <paramref name="ports"/>, and again with as many fresh
    /// ports (up to 5 attempts in all) while it fails with "address in use" (<see cref="IsAddressInUse"/>)
    /// or after one of its ports turned out taken by someone else. Any other failure propagates at once.
    /// Returns the ports the server started on.</summary>
    public static async Task<int[]> StartAsync(int[] ports, Func<int[], Task> start)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await start(ports);
                return ports;
            }
            catch (Exception e) when (attempt < Attempts && (IsAddressInUse(e) || ports.Any(IsTaken)))
            {
                ports = ports.Select(_ => Next()).ToArray(); // lost the race for a port: try new ones
            }
        }
    }

    public static int Start(int port, Action<int> start) =>
        StartAsync([port], ports => { start(ports[0]); return Task.CompletedTask; }).GetAwaiter().GetResult()[0];

    /// <summary>True for Kestrel's "address already in use" (its AddressInUseException wraps the socket
    /// error) and for any socket error EADDRINUSE, however deeply wrapped.</summary>
    public static bool IsAddressInUse(Exception? e) => e switch
    {
        null => false,
        SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse } => true,
        Microsoft.AspNetCore.Connections.AddressInUseException => true,
        AggregateException a => a.InnerExceptions.Any(IsAddressInUse),
        _ => IsAddressInUse(e.InnerException),
    };

    /// <summary>Whether something now listens on (or holds) the port: after a server process exited
    /// during start-up, this tells a lost port race from a real failure.</summary>
    public static bool IsTaken(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return false;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            return true;
        }
    }
}
