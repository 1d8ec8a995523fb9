# CertPortal: build with the .NET SDK, run on the ASP.NET Core runtime as a non-root user,
# with the database and the encrypted CA keys in a volume.
#   docker build -t certportal .
#   docker run -p 8080:8080 -v certportal-data:/data \
#     -e CertPortal__PublicBaseUrl=http://pki.example.com:8080 \
#     -e CertPortal__PortalUrl=https://portal.example.com certportal

# The browser bundle (pkijs: in-browser CSR and PKCS#12) is built with Node from web/'s lockfile.
FROM node:22-bookworm-slim AS web
WORKDIR /src
COPY web/package.json web/package-lock.json web/
RUN cd web && npm ci --no-audit --no-fund
COPY web/ web/
RUN mkdir -p wwwroot/js && cd web && npm run build

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY CertPortal.sln dotnet-tools.json Directory.Build.props .editorconfig ./
COPY src/ src/
COPY migrations/ migrations/
COPY wwwroot/ wwwroot/
COPY --from=web /src/wwwroot/js/ wwwroot/js/
# SkipWebBuild: the bundle comes from the web stage; no Node in this image.
RUN dotnet publish src/CertPortal/CertPortal.csproj -c Release -o /app -p:SkipWebBuild=true

FROM mcr.microsoft.com/dotnet/aspnet:10.0
# System.DirectoryServices.Protocols uses the system's libldap on Linux (LDAP publishing); ldap-utils pulls in
# whichever libldap this distribution ships. .NET 10 loads it by the OpenLDAP 2.5 name libldap-2.5.so.0, but
# this base image (Ubuntu 24.04) ships OpenLDAP 2.6 as libldap.so.2, so LDAP publishing would fail only in the
# container (dotnet/runtime#123676). The workaround from that issue: the 2.5 names as links to the 2.6 library,
# whose API is the same for what .NET calls. Made only where the 2.5 library is missing.
RUN set -eu; \
    apt-get update; \
    apt-get install -y --no-install-recommends ldap-utils; \
    rm -rf /var/lib/apt/lists/*; \
    libdir="/usr/lib/$(uname -m)-linux-gnu"; \
    if [ ! -e "$libdir/libldap-2.5.so.0" ]; then \
      ln -s libldap.so.2 "$libdir/libldap-2.5.so.0"; \
      ln -s liblber.so.2 "$libdir/liblber-2.5.so.0"; \
    fi; \
    test -e "$libdir/libldap-2.5.so.0"; \
    ldconfig
WORKDIR /app
COPY --from=build /app .
RUN mkdir -p /data && chown "$APP_UID" /data
VOLUME /data
ENV ASPNETCORE_URLS=http://+:8080 \
    CertPortal__DataDirectory=/data
# Set CertPortal__PublicBaseUrl to the http:// address relying parties use: it is written into
# every certificate's CRL distribution point and AIA and cannot be changed afterwards.
EXPOSE 8080
USER $APP_UID
# The service bounds glibc's malloc arenas to 2 itself (MALLOC_ARENA_MAX=2, README "Deployment"); set MALLOC_ARENA_MAX with
# -e to choose another bound.
ENTRYPOINT ["dotnet", "CertPortal.dll"]
