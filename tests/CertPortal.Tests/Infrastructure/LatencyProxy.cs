using System.Net;
using System.Net.Sockets;

namespace CertPortal.Tests.Infrastructure;

/// <summary>A small TCP proxy in front of a real server (slapd, aiosmtpd) that delays every chunk it forwards, in both
/// directions, by <see cref="Latency"/> (changeable while running): a server far away or overloaded. With
/// <see cref="DropAnswers"/>, the request reaches the server but the connection breaks as its answer arrives: a client
/// whose network failed after the server did the work (the lost answer a retry must be able to collect).</summary>
public sealed class LatencyProxy : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly int _targetPort;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accepting;

    public LatencyProxy(int targetPort)
    {
        _targetPort = targetPort;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;
    public TimeSpan Latency { get; set; }
    public bool DropAnswers { get; set; }
    /// <summary>Connections accepted so far.</summary>
    public int Connections => Volatile.Read(ref _connections);
    private int _connections;

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            Interlocked.Increment(ref _connections);
            _ = RelayAsync(client);
        }
    }

    private async Task RelayAsync(TcpClient client)
    {
        using (client)
        using (var server = new TcpClient())
        {
            try
            {
                await server.ConnectAsync(IPAddress.Loopback, _targetPort, _stop.Token);
                var a = client.GetStream();
                var b = server.GetStream();
                await Task.WhenAny(PumpAsync(a, b, answer: false), PumpAsync(b, a, answer: true));
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
            {
                // The server is down or either side hung up: the client sees the connection close, as it would.
            }
        }
    }

    private async Task PumpAsync(NetworkStream from, NetworkStream to, bool answer)
    {
        var buffer = new byte[16 * 1024];
        int n;
        while ((n = await from.ReadAsync(buffer, _stop.Token)) > 0)
        {
            if (answer && DropAnswers) return; // both connections close: the client sees it end without an answer
            if (Latency > TimeSpan.Zero) await Task.Delay(Latency, _stop.Token);
            await to.WriteAsync(buffer.AsMemory(0, n), _stop.Token);
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _listener.Dispose();
        _accepting.Wait(TimeSpan.FromSeconds(5));
        _stop.Dispose();
    }
}
