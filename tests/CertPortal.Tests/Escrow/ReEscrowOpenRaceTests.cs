using System.Data.Common;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using CertPortal.Tests.Postgres;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.Extensions.DependencyInjection;

namespace CertPortal.Tests.Escrow;

/// <summary>A recovery request opened while a re-escrow of the same key commits: it belongs to the escrow that is live once
/// both are done (its agents can take part), or the re-escrow cancels it. It landed on the escrow the re-escrow replaced,
/// whose shares were gone: no agent could ever approve it, and nothing cancelled it.</summary>
public abstract class ReEscrowOpenRaceTests(CertPortalApp app, PauseAfterLiveEscrowRead pause) : IDisposable
{
    private readonly ToolDir _agentDir = new("kra-open-race");

    public void Dispose()
    {
        _agentDir.Dispose();
        GC.SuppressFinalize(this);
    }

    [Fact]
    public async Task A_request_opened_while_a_re_escrow_commits_is_on_the_live_escrow_or_cancelled()
    {
        var agents = await app.AddThreeRecoveryAgentsAsync(_agentDir);
        var serial = (await app.EnrollServerKeyAsync($"race.{Guid.NewGuid().ToString("N")[..8]}@example.test", "EC-P256"))
            .GetProperty("serialNumber").GetString()!;
        var reEscrow = await app.OpenRecoveryAsync(serial, "re-escrow");
        foreach (var agent in agents.Take(2)) await Http.EnsureStatus(await app.ApproveAsync(agent, reEscrow), HttpStatusCode.OK);

        // The request has read the live escrow and goes on only once the re-escrow has committed.
        var (paused, release) = pause.Arm();
        var opening = app.OpenRecoveryAsync(serial);
        await paused.WaitAsync(TimeSpan.FromSeconds(60));
        // Others at once, unpaused, around the commit.
        var others = Enumerable.Range(0, 4).Select(_ => app.OpenRecoveryAsync(serial)).ToList();
        await Http.EnsureStatus(await app.Admin.PostAsync($"/api/v1/recoveries/{reEscrow}/re-escrow", null), HttpStatusCode.OK);
        release.SetResult();
        var requests = (await Task.WhenAll(others.Prepend(opening))).ToList();

        var live = await app.EscrowIdAsync(serial);
        foreach (var id in requests)
        {
            var status = (await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/recoveries/{id}")).GetProperty("status").GetString();
            if (status == "cancelled") continue;
            Assert.Equal("open", status);
            using (var scope = app.Services.CreateScope())
                Assert.Equal(live, await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().RecoveryRequests
                    .Where(r => r.Id == id).Select(r => r.EscrowId).SingleAsync());
            // What the agent sees: a share to decrypt, not "escrowed to a different set of recovery agents".
            var share = await agents[2].Client.GetAsync($"/api/v1/recoveries/{id}/share");
            Assert.True(share.StatusCode == HttpStatusCode.OK, $"request {id}: {(int)share.StatusCode} {await share.Content.ReadAsStringAsync()}");
        }
    }
}

/// <summary>Holds the first command, once armed, that reads a certificate's live escrow, after it ran and until released: the
/// request opening then decides on what it read, whatever commits meanwhile.</summary>
public sealed class PauseAfterLiveEscrowRead : DbCommandInterceptor
{
    private sealed record Gate(TaskCompletionSource Paused, TaskCompletionSource Release);

    private Gate? _armed;

    public (Task Paused, TaskCompletionSource Release) Arm()
    {
        var gate = new Gate(new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously),
            new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
        _armed = gate;
        return (gate.Paused.Task, gate.Release);
    }

    public override async ValueTask<DbDataReader> ReaderExecutedAsync(DbCommand command, CommandExecutedEventData eventData, DbDataReader result,
        CancellationToken cancellationToken = default)
    {
        if (command.CommandText.Contains("\"KeyEscrows\"", StringComparison.Ordinal)
            && command.CommandText.Contains("\"SupersededAt\" IS NULL", StringComparison.Ordinal)
            && command.CommandText.Contains("\"SerialNumber\" =", StringComparison.Ordinal)
            && Interlocked.Exchange(ref _armed, null) is { } gate)
        {
            gate.Paused.SetResult();
            await gate.Release.Task;
        }
        return result;
    }
}

public sealed class PausingEscrowApp : EscrowApp
{
    public PauseAfterLiveEscrowRead Pause { get; } = new();

    protected override void ConfigureServices(IServiceCollection services) =>
        services.ConfigureDbContext<SqliteCertPortalDbContext>(o => o.AddInterceptors(Pause));
}

public sealed class PausingPostgresApp : PostgresApp
{
    public PauseAfterLiveEscrowRead Pause { get; } = new();

    protected override void ConfigureServices(IServiceCollection services) =>
        services.ConfigureDbContext<NpgsqlCertPortalDbContext>(o => o.AddInterceptors(Pause));
}

public sealed class SqliteReEscrowOpenRaceTests(PausingEscrowApp app) : ReEscrowOpenRaceTests(app, app.Pause), IClassFixture<PausingEscrowApp>;

public sealed class PostgresReEscrowOpenRaceTests(PausingPostgresApp app) : ReEscrowOpenRaceTests(app, app.Pause), IClassFixture<PausingPostgresApp>;
