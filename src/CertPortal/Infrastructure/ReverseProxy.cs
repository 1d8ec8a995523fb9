using System.Net;
using Microsoft.AspNetCore.HttpOverrides;

namespace CertPortal;

/// <summary>Behind a TLS-terminating proxy the service sees http from the proxy's address. X-Forwarded-For and
/// X-Forwarded-Proto restore the client's address (for the audit log and sign-in throttling) and the https
/// scheme (HSTS, Secure cookies), but only from the proxies in <c>CertPortal:ReverseProxy</c>: anyone else could
/// claim any address. ASP.NET Core trusts loopback by default; that default is cleared, so an unconfigured
/// service believes no forwarded header at all.</summary>
public static class ReverseProxy
{
    public static void AddReverseProxySupport(this IServiceCollection services) =>
        services.AddOptions<ForwardedHeadersOptions>().Configure<CertPortalOptions>((forwarded, options) =>
        {
            forwarded.ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto;
            forwarded.KnownProxies.Clear();
            forwarded.KnownIPNetworks.Clear();
            foreach (var proxy in options.ReverseProxy.KnownProxies) forwarded.KnownProxies.Add(IPAddress.Parse(proxy));
            foreach (var network in options.ReverseProxy.KnownNetworks) forwarded.KnownIPNetworks.Add(System.Net.IPNetwork.Parse(network));
        });
}
