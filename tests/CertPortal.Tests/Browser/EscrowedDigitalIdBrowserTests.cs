using System.Net.Http.Json;
using CertPortal.Data;
using CertPortal.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;

namespace CertPortal.Tests.Browser;

/// <summary>Where policy requires escrow, the page uses server-side generation and says so plainly.</summary>
public sealed class EscrowedDigitalIdBrowserTests(BrowserApp app) : IClassFixture<BrowserApp>
{
    private async Task RequireEscrowAsync(ToolDir agentDir)
    {
        await CertPortal.Tests.Escrow.RecoveryAgents.AddRecoveryAgentAsync(app, agentDir);
        await CertPortal.Tests.Escrow.RecoveryAgents.AddRecoveryAgentAsync(app, agentDir, "EC-P256");
        // N = 3 agents by default (Escrow:MinimumAgents): escrow needs that many before the server generates a key.
        await CertPortal.Tests.Escrow.RecoveryAgents.AddRecoveryAgentAsync(app, agentDir);
        var policy = await app.Admin.PutAsJsonAsync("/api/v1/escrow/policy", new { encryptionKeyGeneration = "Required" });
        await Http.EnsureStatus(policy, System.Net.HttpStatusCode.OK);
    }

    /// <summary>Chooses the file's password, asks for the digital ID and waits for the success page.</summary>
    private static async Task GetDigitalIdAsync(IPage page)
    {
        await page.GetByLabel("Password for the downloaded file").FillAsync("escrowed-p12-pw");
        await page.GetByLabel("Repeat the password").FillAsync("escrowed-p12-pw");
        await page.GetByRole(AriaRole.Button, new() { Name = "Get my digital ID" }).ClickAsync();
        await Assertions.Expect(page.Locator("#enroll-success")).ToBeVisibleAsync(new() { Timeout = 120_000 });
    }

    [Fact]
    public async Task Escrow_policy_makes_the_page_use_the_server_path_and_show_the_notice()
    {
        Tool.Require("openssl", "openssl");
        using var agentDir = new ToolDir("ui-agents");
        await RequireEscrowAsync(agentDir);

        var email = $"esc.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        var token = await app.CreateTokenAsync(email, "encryption", displayName: "Eve Escrow");
        var page = await app.NewPageAsync();
        await page.GotoAsync($"/enroll?token={Uri.EscapeDataString(token.Token)}");
        await Assertions.Expect(page.Locator("#escrow-notice")).ToContainTextAsync("kept in escrow");
        await BrowserApp.ScreenshotAsync(page, "13-escrow-notice");
        await GetDigitalIdAsync(page);
        var serial = (await page.Locator("#cert-serial").TextContentAsync())!.Trim();

        using var dir = new ToolDir("escrow-p12");
        var download = await page.RunAndWaitForDownloadAsync(() => page.GetByRole(AriaRole.Button, new() { Name = "Download digital ID (.p12)" }).ClickAsync());
        await download.SaveAsAsync(dir.File("id.p12"));
        Tool.Run("openssl", ["pkcs12", "-in", dir.File("id.p12"), "-nocerts", "-nodes", "-passin", "pass:escrowed-p12-pw"]).EnsureSuccess();
        using var scope = app.Services.CreateScope();
        Assert.True(await scope.ServiceProvider.GetRequiredService<CertPortalDbContext>().KeyEscrows.AnyAsync(e => e.SerialNumber == serial));
    }

    /// <summary>The certificate is issued and the key escrowed, but a reverse proxy in front answers 504: the page asks once more
    /// with the same request (its requestId and password), and so collects the same digital ID. Before, the page showed the
    /// failure, the token was spent, and the key was left to recovery from escrow.</summary>
    [Fact]
    public async Task A_server_made_digital_id_whose_answer_a_proxy_replaced_with_504_is_collected_by_the_page()
    {
        Tool.Require("openssl", "openssl");
        using var agentDir = new ToolDir("ui-agents-504");
        await RequireEscrowAsync(agentDir);
        var email = $"lost.{Guid.NewGuid().ToString("N")[..6]}@example.test";
        var token = await app.CreateTokenAsync(email, "encryption", displayName: "Lou Lost");
        var page = await app.NewPageAsync();
        var enrollments = await BrowserApp.FirstAnswerLostAt504Async(page, "**/api/v1/enrollments");
        await page.GotoAsync($"/enroll?token={Uri.EscapeDataString(token.Token)}");
        await GetDigitalIdAsync(page);

        Assert.Equal(2, enrollments.Count);
        Assert.Equal(enrollments[0], enrollments[1]);
        Assert.Contains("\"requestId\"", enrollments[0]);
        var serial = (await page.Locator("#cert-serial").TextContentAsync())!.Trim();
        using var scope = app.Services.CreateScope();
        var db = scope.ServiceProvider.GetRequiredService<CertPortalDbContext>();
        Assert.Equal(serial, Assert.Single(await db.Certificates.Where(c => c.Email == email).Select(c => c.SerialNumber).ToListAsync()));
        Assert.True(await db.KeyEscrows.AnyAsync(e => e.SerialNumber == serial));
    }
}
