using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using CertPortal.Tests.Infrastructure;

namespace CertPortal.Tests.Api;

/// <summary>Every operation in the OpenAPI document, called as an administrator with hostile path values and
/// bodies: nothing a client can send may produce a 5xx, and every API error is problem+json.</summary>
public sealed class HostileInputTests(CertPortalApp app) : IClassFixture<CertPortalApp>
{
    private static readonly string[] PathValues =
    [
        "0", "-1", "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "zz", "%00", "..%2F..%2Fetc%2Fpasswd",
        "%E2%80%AE", "a*)(uid=*", "00000000-0000-0000-0000-000000000000", new string('9', 2000), "%F0%9F%92%A9@example.test", "%20",
    ];

    private static readonly (string Name, string? Body, string ContentType)[] Bodies =
    [
        ("malformed JSON", "{\"token\":", "application/json"),
        ("JSON null", "null", "application/json"),
        ("array", "[1,2,3]", "application/json"),
        ("wrong types", "{\"email\":42,\"profile\":[],\"validHours\":\"x\",\"token\":{},\"csr\":true,\"reason\":7,\"serialNumber\":1.5,\"share\":false,\"password\":[],\"name\":{},\"role\":0,\"accountId\":\"nope\",\"certificatePem\":1}", "application/json"),
        ("huge numbers", "{\"validHours\":1e400,\"threshold\":99999999999999999999,\"minimumAgents\":-1}", "application/json"),
        ("nested deeply", new string('[', 5000) + new string(']', 5000), "application/json"),
        ("control characters", "{\"email\":\"a\\u0000b@example.test\",\"displayName\":\"\\u202e\\u0007\",\"reason\":\"\\u0000\",\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\\u0000\"}", "application/json"),
        ("empty", "", "application/json"),
        ("not JSON", "token=abc&csr=def", "application/x-www-form-urlencoded"),
        // A multipart label whose body holds no part: the form reader's "Unexpected end of Stream" (an IOException) was a 500.
        ("multipart without parts", "zzz", "multipart/form-data; boundary=x"),
        // Oversized bodies: EnrollmentApiTests.An_oversized_body_gets_413_problem_details (Kestrel closes the connection).
    ];

    [Fact]
    public async Task No_operation_answers_hostile_input_with_a_server_error()
    {
        var doc = JsonDocument.Parse(await app.Client.GetStringAsync("/swagger/v1/swagger.json")).RootElement;
        var failures = new List<string>();
        var calls = 0;
        foreach (var path in doc.GetProperty("paths").EnumerateObject())
        foreach (var op in path.Value.EnumerateObject())
        {
            var method = new HttpMethod(op.Name.ToUpperInvariant());
            var urls = path.Name.Contains('{')
                ? PathValues.Select(v => System.Text.RegularExpressions.Regex.Replace(path.Name, "\\{[^}]+\\}", v)).ToList()
                : [path.Name + "?page=-5&pageSize=99999999999&status=%00&email=*&usage=both&target=%27"];
            var bodies = method == HttpMethod.Get || method == HttpMethod.Delete ? [("none", null, "")] : Bodies;
            foreach (var url in urls)
            foreach (var (name, body, contentType) in bodies)
            {
                using var request = new HttpRequestMessage(method, url);
                if (body is not null) request.Content = new StringContent(body, Encoding.UTF8, MediaTypeHeaderValue.Parse(contentType));
                using var response = await app.Admin.SendAsync(request);
                calls++;
                var status = (int)response.StatusCode;
                if (status >= 500) failures.Add($"{method} {Shorten(url)} with {name}: {status} {Shorten(await response.Content.ReadAsStringAsync())}");
                else if (status >= 400 && response.Content.Headers.ContentLength != 0
                         && response.Content.Headers.ContentType?.MediaType != "application/problem+json")
                    failures.Add($"{method} {Shorten(url)} with {name}: {status} as {response.Content.Headers.ContentType}");
            }
        }
        Assert.True(calls > 200, $"only {calls} calls: the OpenAPI document lists fewer operations than expected");
        Assert.True(failures.Count == 0, string.Join('\n', failures.Take(40)));
        Assert.Equal("Healthy", await app.Client.GetStringAsync("/healthz")); // and the service is still fine
    }

    private static string Shorten(string s) => s.Length <= 160 ? s : s[..160] + "…";
}
