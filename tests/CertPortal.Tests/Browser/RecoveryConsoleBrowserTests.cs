using System.Net.Http.Json;
using System.Text.Json;
using CertPortal.Tests.Escrow;
using CertPortal.Tests.Infrastructure;
using Microsoft.Playwright;

namespace CertPortal.Tests.Browser;

/// <summary>Key recovery done entirely in the console: an administrator opens the request, two agents each
/// download their encrypted share, decrypt it with certportal-kra on "their machine" and paste it back, and the
/// administrator downloads the recovered key once.</summary>
public sealed class RecoveryConsoleBrowserTests(BrowserApp app) : IClassFixture<BrowserApp>
{
    private const string ConsolePassword = "console password 2026";

    [Fact]
    public async Task Admin_and_two_agents_recover_an_escrowed_key_in_the_browser()
    {
        Tool.Require("openssl", "openssl");
        using var agentDir = new ToolDir("ui-recovery-agents");
        var agents = new List<Agent>
        {
            await app.AddRecoveryAgentAsync(agentDir, "RSA-2048", ConsolePassword),
            await app.AddRecoveryAgentAsync(agentDir, "EC-P256", ConsolePassword),
            await app.AddRecoveryAgentAsync(agentDir, "RSA-2048", ConsolePassword),
        };
        var enrolled = await app.EnrollServerKeyAsync($"lost.{Guid.NewGuid().ToString("N")[..6]}@example.test");
        var serial = enrolled.GetProperty("serialNumber").GetString()!;
        var certificatePem = enrolled.GetProperty("certificatePem").GetString()!;

        // The administrator opens the request.
        var adminName = "recovery-admin-" + Guid.NewGuid().ToString("N")[..6];
        await app.CreateAccountAsync(adminName, "administrator", ConsolePassword);
        var admin = await app.NewPageAsync(bypassCsp: true); // axe-core is injected as a script
        await app.SignInAsync(admin, adminName, ConsolePassword);
        await admin.GotoAsync("/admin/recoveries");
        await admin.GetByLabel("Certificate serial number").FillAsync(serial);
        await admin.GetByLabel("Reason (recorded in the audit log)").FillAsync("laptop stolen, ticket 815");
        await admin.GetByRole(AriaRole.Button, new() { Name = "Open request" }).ClickAsync();
        await Assertions.Expect(admin.GetByRole(AriaRole.Status)).ToContainTextAsync("needs 2 agent approvals");
        var requestId = (await admin.Locator("[data-request-status]").First.GetAttributeAsync("data-request-status"))!;
        await Assertions.Expect(admin.Locator($"[data-request-status='{requestId}']")).ToHaveTextAsync("open");
        // Nothing to download yet.
        await Assertions.Expect(admin.GetByRole(AriaRole.Button, new() { Name = "Download recovered key (.p12)" })).ToHaveCountAsync(0);

        for (var i = 0; i < 2; i++)
        {
            var agent = agents[i];
            var page = await app.NewPageAsync(bypassCsp: true);
            await app.SignInAsync(page, agent.Name, ConsolePassword);
            await page.GotoAsync("/admin/recoveries");
            if (i == 0)
            {
                Assert.Empty(await BrowserApp.SeriousAccessibilityViolationsAsync(page));
                // A wrong share is refused with a message and counts for nothing.
                await page.GetByLabel("Sealed share").FillAsync("not-a-share");
                await page.GetByRole(AriaRole.Button, new() { Name = "Approve with this share" }).ClickAsync();
                await Assertions.Expect(page.GetByRole(AriaRole.Alert)).ToBeVisibleAsync();
                await Assertions.Expect(page.Locator($"[data-request-status='{requestId}']")).ToHaveTextAsync("open");
            }
            var download = await page.RunAndWaitForDownloadAsync(() => page.GetByRole(AriaRole.Link, new() { Name = "Download my encrypted share" }).ClickAsync());
            var shareFile = agentDir.File($"{agent.Name}-ui-share.pem");
            await download.SaveAsAsync(shareFile);
            var share = EscrowApp.RunKra("decrypt-share", "--share", shareFile, "--key", agent.KeyFile).EnsureSuccess().Stdout.Trim();
            await page.GetByLabel("Sealed share").FillAsync(share);
            await page.GetByRole(AriaRole.Button, new() { Name = "Approve with this share" }).ClickAsync();
            await Assertions.Expect(page.GetByRole(AriaRole.Status)).ToContainTextAsync($"{i + 1} of 2");
            if (i == 0) await BrowserApp.ScreenshotAsync(page, "15-recovery-agent-approves");
            // Agents cannot open requests or export keys.
            await Assertions.Expect(page.GetByRole(AriaRole.Button, new() { Name = "Open request" })).ToHaveCountAsync(0);
        }

        // Ready: the administrator downloads the key once.
        await admin.GotoAsync("/admin/recoveries");
        await Assertions.Expect(admin.Locator($"[data-request-status='{requestId}']")).ToHaveTextAsync("ready");
        await admin.GetByLabel("Password for the PKCS#12 file").FillAsync("handover password 99");
        await BrowserApp.ScreenshotAsync(admin, "16-recovery-ready");
        Assert.Empty(await BrowserApp.SeriousAccessibilityViolationsAsync(admin));
        var p12 = await admin.RunAndWaitForDownloadAsync(() => admin.GetByRole(AriaRole.Button, new() { Name = "Download recovered key (.p12)" }).ClickAsync());
        using var dir = new ToolDir("ui-recovered");
        await p12.SaveAsAsync(dir.File("recovered.p12"));
        var key = Tool.Run("openssl", ["pkcs12", "-in", dir.File("recovered.p12"), "-nocerts", "-nodes", "-passin", "pass:handover password 99"]).EnsureSuccess().Stdout;
        var keyPub = Tool.Run("openssl", ["pkey", "-pubout", "-in", dir.Write("key.pem", key)]).EnsureSuccess().Stdout;
        var certPub = Tool.Run("openssl", ["x509", "-noout", "-pubkey", "-in", dir.Write("cert.pem", certificatePem)]).EnsureSuccess().Stdout;
        Assert.Equal(certPub, keyPub);

        // Once only: the request is completed and offers no second download.
        await admin.GotoAsync("/admin/recoveries");
        await Assertions.Expect(admin.Locator($"[data-request-status='{requestId}']")).ToHaveTextAsync("completed");
        await Assertions.Expect(admin.GetByRole(AriaRole.Button, new() { Name = "Download recovered key (.p12)" })).ToHaveCountAsync(0);
        // Audited: who asked, which agents approved (through the console), who took the key.
        var audit = await app.Admin.GetFromJsonAsync<JsonElement>($"/api/v1/audit?target=recovery:{requestId}&pageSize=100");
        var actors = audit.EnumerateArray().Select(e => e.GetProperty("actor").GetString()).ToHashSet();
        Assert.Superset(new HashSet<string?> { adminName, agents[0].Name, agents[1].Name }, actors);
        Assert.DoesNotContain(agents[2].Name, actors);
    }
}
