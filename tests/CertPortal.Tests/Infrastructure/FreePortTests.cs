using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Hosting;

namespace CertPortal.Tests.Infrastructure;

/// <summary>The port race, lost on purpose: the port a server was meant to start on is taken first, and
/// the server starts on another one; any other start failure is not retried.</summary>
public sealed class FreePortTests
{
    [Fact]
    public async Task Kestrel_moves_to_a_free_port_when_its_port_is_taken()
    {
        using var squatter = Squat(out var taken);
        WebApplication? app = null;
        var port = FreePort.Start(taken, p =>
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls($"http://127.0.0.1:{p}");
            var candidate = builder.Build();
            candidate.MapGet("/", () => "up");
            try { candidate.Start(); }
            catch { ((IDisposable)candidate).Dispose(); throw; }
            app = candidate;
        });
        await using (app!)
        {
            Assert.NotEqual(taken, port);
            using var http = new HttpClient();
            Assert.Equal("up", await http.GetStringAsync($"http://127.0.0.1:{port}/"));
        }
    }

    [Fact]
    public async Task Slapd_moves_to_free_ports_when_its_port_is_taken()
    {
        var ldap = new Slapd();
        using var squatter = new TcpListener(IPAddress.Loopback, ldap.Port);
        squatter.Start();
        var taken = ldap.Port;
        try
        {
            await ldap.InitializeAsync();
            Assert.NotEqual(taken, ldap.Port);
            Assert.Contains("dn: " + Slapd.PeopleDn, ldap.Search(Slapd.Suffix, "(ou=people)", "ou"));
        }
        finally
        {
            await ldap.DisposeAsync();
        }
    }

    [Fact]
    public async Task Postgresql_moves_to_a_free_port_when_its_port_is_taken()
    {
        var postgres = new PostgresServer();
        using var squatter = new TcpListener(IPAddress.Loopback, postgres.Port);
        squatter.Start();
        var taken = postgres.Port;
        try
        {
            await postgres.InitializeAsync();
            Assert.NotEqual(taken, postgres.Port);
            await using var connection = new Npgsql.NpgsqlConnection(postgres.ConnectionString("postgres"));
            await connection.OpenAsync();
        }
        finally
        {
            await postgres.DisposeAsync();
        }
    }

    [Fact]
    public async Task Other_start_failures_are_not_retried()
    {
        var attempts = 0;
        await Assert.ThrowsAsync<InvalidOperationException>(() => FreePort.StartAsync([FreePort.Next()], _ =>
        {
            attempts++;
            throw new InvalidOperationException("bad configuration");
        }));
        Assert.Equal(1, attempts);
    }

    private static TcpListener Squat(out int port)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        port = ((IPEndPoint)listener.LocalEndpoint).Port;
        return listener;
    }
}
