#!/usr/bin/env bash
# Builds the container image and smoke-tests it: health, one enrollment (openssl CSR), one LDAP publication
# (a private slapd on the host, reached with host networking). Needs docker or podman with a running engine,
# plus openssl, jq, curl, slapd and ldap-utils on the host. Usage: scripts/container-smoke.sh [image-tag]
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-certportal:smoke}"

engine=""
for candidate in docker podman; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" info >/dev/null 2>&1; then engine="$candidate"; break; fi
done
if [ -z "$engine" ]; then
  echo "No container engine with a running daemon (docker or podman): the image was not built." >&2
  exit 2
fi

work="$(mktemp -d)"
container=""
slapd_pid=""
cleanup() {
  [ -n "$container" ] && "$engine" rm -f "$container" >/dev/null 2>&1 || true
  [ -n "$slapd_pid" ] && kill "$slapd_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
http_port="$(free_port)"
ldap_port="$(free_port)"
admin_key="smoke-admin-key-$(openssl rand -hex 16)"

echo "== build $tag with $engine"
"$engine" build -t "$tag" .

echo "== private slapd on 127.0.0.1:$ldap_port"
mkdir -p "$work/db"
cat > "$work/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $work/slapd.pid
database mdb
maxsize 67108864
suffix "dc=example,dc=com"
rootdn "cn=admin,dc=example,dc=com"
rootpw smoke-ldap-secret
directory $work/db
index mail eq
CONF
/usr/sbin/slapd -d 0 -h "ldap://127.0.0.1:$ldap_port/" -f "$work/slapd.conf" >"$work/slapd.log" 2>&1 &
slapd_pid=$!
for _ in $(seq 50); do ldapsearch -x -H "ldap://127.0.0.1:$ldap_port" -b "" -s base >/dev/null 2>&1 && break; sleep 0.1; done
ldapadd -x -H "ldap://127.0.0.1:$ldap_port" -D "cn=admin,dc=example,dc=com" -w smoke-ldap-secret >/dev/null <<LDIF
dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people
LDIF

echo "== run the image (host network, so it reaches the slapd on loopback)"
container="$("$engine" run -d --network host \
  -e ASPNETCORE_URLS="http://127.0.0.1:$http_port" \
  -e CertPortal__AdminApiKey="$admin_key" \
  -e CertPortal__Ca__KeyPassphrase="smoke-ca-passphrase-$(openssl rand -hex 8)" \
  -e CertPortal__Directory__Url="ldap://127.0.0.1:$ldap_port" \
  -e CertPortal__Directory__BindDn="cn=admin,dc=example,dc=com" \
  -e CertPortal__Directory__BindPassword=smoke-ldap-secret \
  -e CertPortal__Directory__PeopleBaseDn="ou=people,dc=example,dc=com" \
  "$tag")"
base="http://127.0.0.1:$http_port"
for _ in $(seq 120); do curl -fs "$base/healthz" >/dev/null 2>&1 && break; sleep 1; done
curl -fs "$base/healthz" | grep -q Healthy || { "$engine" logs "$container"; echo "FAIL: /healthz" >&2; exit 1; }
echo "health: ok"

echo "== one enrollment"
token="$(curl -fs -H "Authorization: Bearer $admin_key" -H 'Content-Type: application/json' \
  -d '{"email":"smoke@example.com","displayName":"Smoke Test","profile":"signing","validHours":1}' "$base/api/v1/tokens" | jq -r .token)"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/key.pem" -subj /CN=smoke@example.com -out "$work/csr.pem" 2>/dev/null
serial="$(jq -n --arg token "$token" --rawfile csr "$work/csr.pem" '{token:$token,csr:$csr}' |
  curl -fs -H 'Content-Type: application/json' -d @- "$base/api/v1/enrollments" | jq -r .serialNumber)"
[ -n "$serial" ] && [ "$serial" != null ] || { echo "FAIL: enrollment" >&2; exit 1; }
echo "enrollment: certificate $serial"

echo "== one LDAP publication (libldap loads in the image)"
for _ in $(seq 60); do
  if ldapsearch -x -LLL -H "ldap://127.0.0.1:$ldap_port" -b "ou=people,dc=example,dc=com" "(mail=smoke@example.com)" "userCertificate;binary" 2>/dev/null | grep -q "userCertificate;binary"; then
    echo "LDAP publication: ok"
    echo "PASS: $tag"
    exit 0
  fi
  sleep 1
done
"$engine" logs "$container" | tail -40
echo "FAIL: the certificate did not reach the directory" >&2
exit 1
