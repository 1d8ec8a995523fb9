#!/usr/bin/env bash
# CertPortal side by side with its references, in one run on one machine (issue 12):
#   enrollment (EC-P256 and RSA-3072 issuing CA) on SQLite and PostgreSQL  vs  cfssl serve (P-256 CA) signing the
#   same CSRs over REST, and openssl speed -multi <cores> rsa3072;
#   token creation (target 1,000/s); recipient look-up and OCSP GET with wrk at 32 connections vs a bare Kestrel minimal API
#   returning the same bytes; OCSP POST with a nonce (signed per request) vs openssl speed -multi <cores> rsa2048;
#   optionally (--revocation) 100,000 revocations over the API (10,000 with --quick) of
#   certificates seeded by CertPortal.Bench --seed-certificates, the time until the CRL lists them all, and the database's
#   size afterwards. They are revoked for keyCompromise (the dearest reason: it also blocks the key and looks for other
#   certificates with it) unless --revocation-reason=NAME names another (superseded, cessationOfOperation, ...).
# The enrollment rows' references are measured right before and right after each row (cfssl, openssl speed rsa3072)
# and the ratio is to their mean, so that a row and its reference share the machine's load.
# Every figure is printed with its ratio to its reference. The service runs as built for production (Release,
# SQLite WAL + synchronous=FULL, PostgreSQL with fsync on); the load generator (wrk) runs on the same machine and takes
# its share of the cores.
#
# The POST rows (enrollment, cfssl's sign endpoint, token creation, revocation) are driven by wrk with bench/post.lua:
# 8 connections, each request the next of a file of pre-made requests (no body sent twice), the run over when all are
# answered. A row fails (the script exits non-zero) on any other status than the expected one and on any socket error.
# --client=curl drives them with curl --parallel instead, as before session 11: curl spent 0.18-0.27 ms of CPU per
# request on the 2 cores that it shares with the servers, wrk 0.055-0.10 ms.
#
# Server CPU per request (from /proc) is printed beside each rate: on a machine shared with other work the rates
# follow the load, the CPU cost per request much less. The load generator's own CPU per request follows it.
# --crl: the product's CRL path with 1,000,000 revoked certificates (CertPortal.Bench --crl), against the target.
#
# --memory: the service's resident set size over a 10-minute mixed run (3 minutes with --quick; CertPortal.Bench --mixed-load)
# after a warm-up that ends once the bounded look-up and OCSP caches are full or no longer growing (at most 15 minutes).
#
# --only=PART,...: only these of sqlite-ec, pg-ec, sqlite-rsa (CertPortal), cfssl, kestrel, openssl (the references);
# --revocation, --crl and --memory as given.
#
# Usage: bench/compare.sh [--quick] [--revocation] [--revocation-reason=NAME] [--crl] [--memory] [--no-postgres]
#                         [--client=wrk|curl] [--only=PART,...]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

quick=0; revocation=0; postgres=1; bigcrl=0; memory=0; reason=keyCompromise; client=wrk; only=
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --revocation) revocation=1 ;;
    --no-postgres) postgres=0 ;;
    --crl) bigcrl=1 ;;
    --memory) memory=1 ;;
    --revocation-reason=*) reason=${a#*=} ;;
    --client=wrk|--client=curl) client=${a#*=} ;;
    --only=*) only=${a#*=}
      for part in ${only//,/ }; do
        case "$part" in sqlite-ec|pg-ec|sqlite-rsa|cfssl|kestrel|openssl) ;; *) echo "unknown part $part in $a" >&2; exit 2 ;; esac
      done ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
# wants PART: whether this run measures PART (every part unless --only names some)
wants() { [ -z "$only" ] || [[ ",$only," == *",$1,"* ]]; }
# Enough requests that a row lasts seconds at the rates wrk reaches (cfssl signs ~3,000/s on the 2 cores; until
# session 11, with curl, the quick run sent 600).
enrollments=$([ $quick = 1 ] && echo 2000 || echo 10000)
rsa_enrollments=$([ $quick = 1 ] && echo 1000 || echo 3000)
revocations=$([ $quick = 1 ] && echo 10000 || echo 100000)
wrk_seconds=$([ $quick = 1 ] && echo 5 || echo 10)
memory_seconds=$([ $quick = 1 ] && echo 180 || echo 600)
# 1,000 unmeasured requests per service and path: with the defaults of .NET 10 a hot method was still being recompiled
# after several hundred requests; with dynamic PGO off (CertPortal.csproj) most of it is compiled optimised within the
# first few hundred, and 1,000 leaves the measured requests to the steady state a running service is in.
warmup=1000
clients=8
cores=$(nproc)

# The programs it runs, installed from Debian's packages when missing (as the test command does; root or sudo).
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need curl curl; need jq jq; need openssl openssl; need wrk wrk; need cfssl golang-cfssl; need sqlite3 sqlite3
if [ $postgres = 1 ] && ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then missing+=(postgresql); fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  echo "Installing ${missing[*]}..." >&2
  # policy-rc.d: the packaged PostgreSQL service is not started (this script runs a private cluster).
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null; $sudo chmod 755 /usr/sbin/policy-rc.d; policy=1; fi
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "${policy:-0}" = 1 ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi
fi
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ $postgres = 1 ] && [ -z "$pgbin" ]; then echo "PostgreSQL not installed (package postgresql); use --no-postgres" >&2; exit 1; fi

work=$(mktemp -d /tmp/certportal-compare.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${pgdata:-}" ] && [ -d "$pgdata" ]; then runuser -u postgres -- "$pgbin/pg_ctl" stop -D "$pgdata" -m fast -w >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 600); do curl -fs -o /dev/null "$1" && return 0; sleep 0.2; done; echo "no answer from $1" >&2; return 1; }

echo "Building (Release)..." >&2
dotnet build -c Release src/CertPortal -v q -nologo >/dev/null
dotnet build -c Release bench/CertPortal.Bench -v q -nologo >/dev/null
portal_dll=$root/src/CertPortal/bin/Release/net10.0/CertPortal.dll
bench_dll=$root/bench/CertPortal.Bench/bin/Release/net10.0/CertPortal.Bench.dll
admin_key=bench-admin-key-0123456789abcdef

# ---- subscriber CSRs (P-256), made once, used by every enrollment run and by cfssl -------------------------------
# One a line: the mailbox (also the CSR's CN) and the PEM as a JSON string.
echo "Making $enrollments + $warmup P-256 CSRs..." >&2
dotnet "$bench_dll" --csrs "$enrollments" bench "$work/csrs"
dotnet "$bench_dll" --csrs "$warmup" warm "$work/warm-csrs"

# enroll_requests TOKEN_RESPONSES CSRS: a request line ("PATH BODY", see run_load) per CSR, with the token that
# POST /api/v1/tokens answered for the CSR's mailbox
enroll_requests() {
  jq -r '"\(.email) \(.token)"' "$1" | awk 'NR == FNR { token[$1] = $2; next }
    !($1 in token) { print "no token for " $1 > "/dev/stderr"; exit 1 }
    { print "/api/v1/enrollments {\"token\":\"" token[$1] "\",\"csr\":" substr($0, length($1) + 2) "}" }' - "$2"
}

# token_requests CSRS [NAMED]: a POST /api/v1/tokens line per CSR's mailbox (with NAMED, and a display name)
token_requests() {
  awk -v named="${2:-}" '{ print "/api/v1/tokens {\"email\":\"" $1 "\"" (named ? ",\"displayName\":\"Bench " NR "\"" : "") \
    ",\"profile\":\"encryption\",\"validHours\":24}" }' "$1"
}

# cpu_between TIMES0 TIMES1: CPU seconds (user + system) of this shell's children that ended between two `times > FILE`
# (run in this shell itself: a subshell counts only its own children)
cpu_between() {
  awk 'function s(t) { split(t, a, /[ms]/); return a[1] * 60 + a[2] } FNR == 2 { v[NR > 2] = s($1) + s($2) } END { print v[1] - v[0] }' "$1" "$2"
}

# cpu_seconds PID: user + system CPU time the process has used so far
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

# pg_cpu_seconds: user + system CPU time of the private PostgreSQL cluster so far (the postmaster and every process it
# started: the service's backends, which the connection pool keeps for the whole run, the WAL writer, the checkpointer)
pg_cpu_seconds() {
  [ -n "${pg_postmaster:-}" ] || { echo 0; return; }
  local p t=0
  for p in "$pg_postmaster" $(pgrep -P "$pg_postmaster"); do t=$(echo "$t + $(cpu_seconds "$p" 2>/dev/null || echo 0)" | bc -l); done
  echo "$t"
}

# run_load NAME REQUESTS EXPECTED_STATUS SERVER_PID BASE_URL AUTH SAVE [pg]: POSTs every line of the file REQUESTS,
# "PATH BODY" (BODY one line of JSON), to BASE_URL with 8 clients (wrk and bench/post.lua; curl --parallel with
# --client=curl), with AUTH as bearer token unless it is empty. Writes $work/NAME.result, "rate p50 p99 cpu pgcpu
# clientcpu" (per second; ms; the server's CPU ms per request; with "pg" the PostgreSQL cluster's CPU ms per request,
# else 0; the load generator's CPU ms per request), the time of the last answer to $work/NAME.ended (as date +%s.%N),
# and with SAVE "first" or "all" the first or every response body to $work/NAME.responses, one a line. Fails, and so ends the script, unless every request was answered with
# EXPECTED_STATUS without a socket error.
run_load() {
  local name=$1 reqs=$2 expected=$3 server=$4 base=$5 auth=$6 save=$7 pg=${8:-}
  local n cpu0 cpu1 pg0=0 pg1=0 rate p50 p99 client_cpu
  n=$(wc -l < "$reqs")
  local headers=(-H "Content-Type: application/json")
  [ -n "$auth" ] && headers+=(-H "Authorization: Bearer $auth")
  rm -f "$work/$name.responses"
  if [ "$client" = wrk ]; then
    local args=("$reqs" "$clients")
    [ "$save" != none ] && args+=("$work/$name.responses" "$save")
    cpu0=$(cpu_seconds "$server"); [ "$pg" = pg ] && pg0=$(pg_cpu_seconds)
    # -d only bounds a run that hangs: post.lua ends it when the last request is answered. --timeout 10s: wrk's
    # latency histogram ends there (a slower answer counts as a timeout and fails the row).
    wrk -t1 -c"$clients" -d"$((30 + n / 50))s" --timeout 10s -s "$root/bench/post.lua" "${headers[@]}" "$base" \
      -- "${args[@]}" > "$work/$name.out" || true # a failed run is told below
    cpu1=$(cpu_seconds "$server"); [ "$pg" = pg ] && pg1=$(pg_cpu_seconds)
    local line; line=$(grep '^post.lua:' "$work/$name.out" || true)
    kv() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
    if [ "$(kv answered)" != "$n" ] || [ "$(kv statuses)" != "$expected:$n" ] \
       || [ "$(kv errors)" != connect:0,read:0,write:0,timeout:0 ]; then
      echo "$name: not $n answers $expected without errors:" >&2; cat "$work/$name.out" >&2; return 1
    fi
    [ "$(kv recorded)" = "$n" ] || { echo "$name: wrk's latency histogram holds $(kv recorded) requests, not $n" >&2; return 1; }
    rate=$(echo "$n / $(kv seconds)" | bc -l)
    p50=$(echo "$(kv p50_us) / 1000" | bc -l); p99=$(echo "$(kv p99_us) / 1000" | bc -l)
    client_cpu=$(kv cpu_s) # wrk's own count: its `times` would add the analysis in done(), after the run
    kv last_answer > "$work/$name.ended" # wrk exits after that analysis (up to a second for 100,000 requests)
  else
    local dir="$work/$name.d"; mkdir -p "$dir"
    # One body file per request ("next" separates requests; one after the last would start an empty request).
    awk -v dir="$dir" -v base="$base" -v auth="$auth" -v save="$save" '
      { sp = index($0, " "); body = dir "/" NR ".json"; printf "%s", substr($0, sp + 1) > body; close(body)
        if (NR > 1) print "next"
        print "url = \"" base substr($0, 1, sp - 1) "\""
        print "header = \"Content-Type: application/json\""
        if (auth != "") print "header = \"Authorization: Bearer " auth "\""
        print "data = \"@" body "\""
        print "output = \"" ((save == "all" || (save == "first" && NR == 1)) ? dir "/" NR ".out" : "/dev/null") "\""
        print "write-out = \"%{http_code} %{time_total}\\n\"" }' "$reqs" > "$work/$name.cfg"
    local start end
    cpu0=$(cpu_seconds "$server"); [ "$pg" = pg ] && pg0=$(pg_cpu_seconds); start=$(date +%s.%N)
    times > "$work/$name.times0"
    curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max "$clients" -K "$work/$name.cfg" > "$work/$name.codes" || true # told below
    times > "$work/$name.times1"
    end=$(date +%s.%N); cpu1=$(cpu_seconds "$server"); [ "$pg" = pg ] && pg1=$(pg_cpu_seconds)
    echo "$end" > "$work/$name.ended"
    local bad; bad=$(awk -v e="$expected" '$1 != e' "$work/$name.codes" | wc -l)
    if [ "$bad" -gt 0 ] || [ "$(wc -l < "$work/$name.codes")" -ne "$n" ]; then
      echo "$name: not $n answers $expected:" >&2; awk '{ print $1 }' "$work/$name.codes" | sort | uniq -c >&2; return 1
    fi
    case "$save" in
      all) find "$dir" -name '*.out' -exec awk 1 {} + > "$work/$name.responses" ;;
      first) awk 1 "$dir/1.out" > "$work/$name.responses" ;;
    esac
    awk '{ print $2 * 1000 }' "$work/$name.codes" | sort -n > "$work/$name.sorted"
    rate=$(echo "$n / ($end - $start)" | bc -l)
    p50=$(awk -v n="$n" 'NR == int(n * 0.50 + 0.5) { print; exit }' "$work/$name.sorted")
    p99=$(awk -v n="$n" 'NR == int(n * 0.99 + 0.5) { print; exit }' "$work/$name.sorted")
    client_cpu=$(cpu_between "$work/$name.times0" "$work/$name.times1")
  fi
  echo "$rate $p50 $p99 $(echo "1000 * ($cpu1 - $cpu0) / $n" | bc -l) $(echo "1000 * ($pg1 - $pg0) / $n" | bc -l)" \
    "$(echo "1000 * $client_cpu / $n" | bc -l)" > "$work/$name.result"
}

# wrk_run URL SERVER_PID -> "rate p99_ms cpu_ms wrk_cpu_ms" (the server's and wrk's CPU ms per request: under load the
# rate and p99 follow the machine, the CPU per request much less). Run in a subshell (< <(...)), whose `times` counts
# the wrk runs it waited for.
wrk_run() {
  local url=$1 server=$2; shift 2 # the rest: wrk's script arguments (-s FILE URL -- ARGS needs them after the URL)
  wrk -t2 -c32 -d2s "$url" "$@" > /dev/null # warm-up (JIT), not measured
  local cpu0 cpu1 t0="$work/wrk-times0.$BASHPID" t1="$work/wrk-times1.$BASHPID"; cpu0=$(cpu_seconds "$server")
  times > "$t0"
  local out; out=$(wrk -t2 -c32 -d"${wrk_seconds}s" --latency "$url" "$@")
  times > "$t1"
  cpu1=$(cpu_seconds "$server")
  # Every request must have had a 2xx answer (OCSP answers even its errors with 200: the POST row checks one answer first).
  if echo "$out" | grep -q 'Non-2xx'; then echo "wrk: non-2xx answers from $url" >&2; echo "$out" >&2; exit 1; fi
  local rate p99 n
  rate=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  p99=$(echo "$out" | awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}')
  echo "$rate $p99 $(echo "1000 * ($cpu1 - $cpu0) / $n" | bc -l) $(echo "1000 * $(cpu_between "$t0" "$t1") / $n" | bc -l)"
}

declare -A result
rows=()

# ---- cfssl serve: a P-256 CA, the same CSRs over its REST sign endpoint -------------------------------------------
# Started before the CertPortal rows and measured right before and right after each EC-P256 enrollment row (the ratio
# is to the mean of the two): on this shared machine the load moves within minutes, and a reference measured minutes
# after its row compared the two under different loads (session 14: 24 % with a build beside the row, cfssl ten minutes
# later on a quieter machine). The idle service and the idle cfssl cost nothing while the other is measured.
cfpid=
if wants cfssl; then
cf="$work/cfssl"; mkdir -p "$cf"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$cf/ca-key.pem" -out "$cf/ca.pem" -days 365 \
  -subj "/CN=cfssl bench CA" 2>/dev/null
echo '{"signing":{"default":{"expiry":"8760h","usages":["digital signature","key agreement","email protection"]}}}' > "$cf/config.json"
cfport=$(free_port)
cfssl serve -address=127.0.0.1 -port="$cfport" -ca="$cf/ca.pem" -ca-key="$cf/ca-key.pem" -config="$cf/config.json" > "$cf/log" 2>&1 &
cfpid=$!; pids+=("$cfpid")
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$cfport/api/v1/cfssl/sign" && break; sleep 0.1; done
awk '{ print "/api/v1/cfssl/sign {\"certificate_request\":" substr($0, length($1) + 2) "}" }' "$work/csrs" > "$cf/sign.req"
fi
# cfssl_row NAME: cfssl signs every CSR once, 8 clients; result[NAME]="rate p99 cpu clientcpu" (run in this shell, not
# in a command substitution, where a failure would not end the script)
cfssl_row() {
  run_load "$1" "$cf/sign.req" 200 "$cfpid" "http://127.0.0.1:$cfport" "" first || exit 1
  jq -e '.success and (.result.certificate | startswith("-----BEGIN CERTIFICATE"))' "$work/$1.responses" >/dev/null \
    || { echo "cfssl did not sign" >&2; exit 1; }
  local rate p50 p99 cpu ccpu
  read -r rate p50 p99 cpu _ ccpu < "$work/$1.result"
  result[$1]="$rate $p99 $cpu $ccpu"
}
# rsa_speed BITS -> openssl speed -multi <cores> rsaBITS's signatures per second
rsa_speed() { openssl speed -seconds 5 -multi "$cores" "rsa$1" 2>/dev/null | awk -v b="$1" '$1 == "rsa" && $2 == b {v=$(NF-1)} END {print v}'; }
# mean_rows A B: the field-by-field mean of two result strings
mean_rows() { awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x); split(b, y); for (i = 1; i <= n; i++) printf "%s%s", (i > 1 ? " " : ""), (x[i] + y[i]) / 2; print "" }'; }

# ---- CertPortal: one configuration ---------------------------------------------------------------------------------
# portal_run LABEL PROVIDER ISSUING_ALG N
portal_run() {
  local label=$1 provider=$2 alg=$3 n=$4
  local data="$work/portal-$label" port; port=$(free_port)
  local pgflag; pgflag=$([ "$provider" = Postgres ] && echo pg || echo -)
  mkdir -p "$data"
  local env=(CertPortal__DataDirectory="$data" CertPortal__AdminApiKey="$admin_key" CertPortal__PublicBaseUrl="http://127.0.0.1:$port"
             CertPortal__Ca__KeyPassphrase=bench-passphrase-0123 CertPortal__Ca__IssuingKeyAlgorithm="$alg"
             CertPortal__Ca__RootKeyAlgorithm="$([ "$alg" = EC-P256 ] && echo EC-P384 || echo RSA-4096)"
             ASPNETCORE_URLS="http://127.0.0.1:$port" ASPNETCORE_ENVIRONMENT=Production Logging__LogLevel__Default=Warning)
  if [ "$provider" = Postgres ]; then
    local dbname="bench_${label//-/_}"
    runuser -u postgres -- "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres "$dbname"
    env+=(CertPortal__Database__Provider=Postgres CertPortal__Database__ConnectionString="Host=127.0.0.1;Port=$pgport;Username=postgres;Database=$dbname;Maximum Pool Size=64")
  fi
  (cd "$data" && exec env "${env[@]}" dotnet "$portal_dll" > "$data/log" 2>&1) &
  local pid=$!; pids+=("$pid")
  wait_http "http://127.0.0.1:$port/healthz"
  local base="http://127.0.0.1:$port"

  # Warm-up, not measured: a full token + enrollment round of $warmup requests, so the JIT has compiled the hot paths
  # (cfssl is compiled ahead of time; a cold .NET process runs its first few hundred requests at a fraction of its
  # speed) and the connection pools are filled.
  token_requests "$work/warm-csrs" > "$data/warm-tokens.req"
  run_load "warm-tokens-$label" "$data/warm-tokens.req" 201 "$pid" "$base" "$admin_key" all
  enroll_requests "$work/warm-tokens-$label.responses" "$work/warm-csrs" > "$data/warm-enroll.req"
  run_load "warm-enroll-$label" "$data/warm-enroll.req" 201 "$pid" "$base" "" none
  # And 64 connections of their own: each load run above opens only 8, and Kestrel's per-connection code reaches the
  # JIT's 30-call threshold only at the 30th connection, which fell into the measured enrollments (a 1,500-enrollment
  # profile: 300 methods compiled, 8 % of the service's samples on the JIT's thread; 13 methods with these connections).
  for _ in $(seq 1 64); do curl -fs -o /dev/null "$base/healthz"; done
  sleep 1 # the JIT compiles in the background

  # Token creation: n tokens, 8 clients.
  head -n "$n" "$work/csrs" > "$data/csrs"
  token_requests "$data/csrs" named > "$data/tokens.req"
  run_load "tokens-$label" "$data/tokens.req" 201 "$pid" "$base" "$admin_key" all "$pgflag"
  read -r rate p50 p99 cpu pgcpu ccpu < "$work/tokens-$label.result"
  result["tokens-$label"]="$rate $p99 $cpu $pgcpu $ccpu"

  # Enrollment: the same CSRs, one pre-made token each, 8 clients; its reference measured right before and right after
  # it (cfssl signing the same CSRs for an EC-P256 CA, openssl speed for RSA-3072), the ratio taken to their mean.
  enroll_requests "$work/tokens-$label.responses" "$data/csrs" > "$data/enroll.req"
  if [ "$alg" = EC-P256 ] && [ -n "$cfpid" ]; then cfssl_row "cfssl-before-$label"; fi
  if [ "$alg" = RSA-3072 ] && wants openssl; then rsa_before=$(rsa_speed 3072); fi
  run_load "enroll-$label" "$data/enroll.req" 201 "$pid" "$base" "" first "$pgflag"
  read -r rate p50 p99 cpu pgcpu ccpu < "$work/enroll-$label.result"
  result["enroll-$label"]="$rate $p99 $cpu $pgcpu $ccpu"
  if [ "$alg" = EC-P256 ] && [ -n "$cfpid" ]; then
    cfssl_row "cfssl-after-$label"
    result["cfssl-$label"]=$(mean_rows "${result[cfssl-before-$label]}" "${result[cfssl-after-$label]}")
  fi
  if [ "$alg" = RSA-3072 ] && wants openssl; then
    local rsa_after; rsa_after=$(rsa_speed 3072)
    result["rsa-$label"]="$(mean_rows "$rsa_before" "$rsa_after") $rsa_before $rsa_after"
  fi
  # Each 201 answer is one new certificate in the database, for its own mailbox: none lost, none issued twice.
  local stored query='SELECT count(*), count(DISTINCT "Email") FROM "Certificates" WHERE "Email" LIKE '"'bench%'"
  if [ "$provider" = Postgres ]; then
    stored=$("$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U postgres -d "$dbname" -At -F ' ' -c "$query")
  else
    stored=$(sqlite3 -readonly -separator ' ' "$data/certportal.db" "$query")
  fi
  [ "$stored" = "$n $n" ] \
    || { echo "enrollment ($label): $n answers 201, but the database holds (certificates, mailboxes) $stored" >&2; exit 1; }
  echo "  enrollment ($label): $n answers 201, $n new certificates in the database for $n mailboxes" >&2

  # Look-up: one mailbox with one certificate, wrk at 32 connections.
  local url="$base/api/v1/directory/bench1@example.com/certificates?usage=encryption"
  curl -fs -o "$work/lookup-body-$label.json" "$url"
  read -r rate p99 cpu gcpu < <(wrk_run "$url" "$pid")
  result["lookup-$label"]="$rate $p99 $cpu $gcpu"
  cp "$work/lookup-body-$label.json" "$work/lookup-body.json"

  # OCSP: the same certificate's status by GET (RFC 5019, no nonce), answered from the responder's cache.
  jq -r .certificatePem "$work/enroll-$label.responses" > "$data/ocsp-leaf.pem"
  curl -fs "$base/ca/issuing.crt" | openssl x509 -inform der -out "$data/ocsp-issuing.pem"
  openssl ocsp -issuer "$data/ocsp-issuing.pem" -cert "$data/ocsp-leaf.pem" -no_nonce -reqout "$data/ocsp-request.der" >/dev/null
  ocsp_path="/ocsp/$(base64 -w0 "$data/ocsp-request.der" | jq -sRr @uri)"
  curl -fs -o "$work/ocsp-body-$label.der" "$base$ocsp_path"
  openssl ocsp -respin "$work/ocsp-body-$label.der" -issuer "$data/ocsp-issuing.pem" -cert "$data/ocsp-leaf.pem" -noverify 2>/dev/null \
    | grep -q ': good' || { echo "OCSP ($label) did not answer good" >&2; exit 1; }
  read -r rate p99 cpu gcpu < <(wrk_run "$base$ocsp_path" "$pid")
  result["ocsp-$label"]="$rate $p99 $cpu $gcpu"
  cp "$work/ocsp-body-$label.der" "$work/ocsp-body.der"

  # OCSP POST with a nonce (RFC 8954): the status still from memory, but every response signed afresh (the responder's
  # RSA-2048 key), so the reference is openssl speed's RSA-2048 signature rate.
  openssl ocsp -issuer "$data/ocsp-issuing.pem" -cert "$data/ocsp-leaf.pem" -reqout "$data/ocsp-nonce-request.der" >/dev/null
  curl -fs -H 'Content-Type: application/ocsp-request' --data-binary @"$data/ocsp-nonce-request.der" -o "$work/ocsp-nonce-$label.der" "$base/ocsp"
  openssl ocsp -reqin "$data/ocsp-nonce-request.der" -respin "$work/ocsp-nonce-$label.der" -issuer "$data/ocsp-issuing.pem" \
    -cert "$data/ocsp-leaf.pem" -noverify 2>&1 | grep -qi 'nonce' && { echo "OCSP POST ($label): nonce not echoed" >&2; exit 1; }
  openssl ocsp -respin "$work/ocsp-nonce-$label.der" -issuer "$data/ocsp-issuing.pem" -cert "$data/ocsp-leaf.pem" -noverify 2>/dev/null \
    | grep -q ': good' || { echo "OCSP POST ($label) did not answer good" >&2; exit 1; }
  read -r rate p99 cpu gcpu < <(wrk_run "$base" "$pid" -s bench/ocsp-post.lua -- "$data/ocsp-nonce-request.der")
  [ -n "$rate" ] || { echo "OCSP POST ($label): wrk failed" >&2; exit 1; }
  result["ocsp-nonce-$label"]="$rate $p99 $cpu $gcpu"

  kill "$pid"; wait "$pid" 2>/dev/null || true
}

# ---- Revocation at scale: one configuration ---------------------------------------------------------------------------
# revocation_run LABEL PROVIDER N: N certificates seeded straight into the database (signed by the service's issuing CA;
# issuing them over HTTP first would take longer than the run), $warmup of them revoked unmeasured, then N revoked with
# POST /api/v1/certificates/{serial}/revoke by 8 clients; then how long until the served CRL lists them all, and the
# database's size beside its rows.
revocation_run() {
  local label=$1 provider=$2 n=$3
  local data="$work/revoke-$label" port; port=$(free_port)
  local pgflag; pgflag=$([ "$provider" = Postgres ] && echo pg || echo -)
  mkdir -p "$data"
  local env=(CertPortal__DataDirectory="$data" CertPortal__AdminApiKey="$admin_key" CertPortal__PublicBaseUrl="http://127.0.0.1:$port"
             CertPortal__Ca__KeyPassphrase=bench-passphrase-0123 CertPortal__Ca__IssuingKeyAlgorithm=EC-P256 CertPortal__Ca__RootKeyAlgorithm=EC-P384
             ASPNETCORE_URLS="http://127.0.0.1:$port" ASPNETCORE_ENVIRONMENT=Production Logging__LogLevel__Default=Warning)
  local dbname="revoke_${label//-/_}"
  if [ "$provider" = Postgres ]; then
    runuser -u postgres -- "$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres "$dbname"
    env+=(CertPortal__Database__Provider=Postgres CertPortal__Database__ConnectionString="Host=127.0.0.1;Port=$pgport;Username=postgres;Database=$dbname;Maximum Pool Size=64")
  fi
  (cd "$data" && env "${env[@]}" dotnet "$bench_dll" --seed-certificates $((n + warmup)) > "$data/serials")
  local lines seeded; lines=$(wc -l < "$data/serials"); seeded=$(grep -cE '^[0-9A-Fa-f]+$' "$data/serials" || true)
  [ "$lines" -eq $((n + warmup)) ] && [ "$seeded" -eq "$lines" ] \
    || { echo "revocation ($label): the seeding printed $lines lines, $seeded of them serial numbers, not $((n + warmup))" >&2; exit 1; }
  (cd "$data" && exec env "${env[@]}" dotnet "$portal_dll" > "$data/log" 2>&1) &
  local pid=$!; pids+=("$pid")
  wait_http "http://127.0.0.1:$port/healthz"
  local base="http://127.0.0.1:$port"
  # revoke_requests FIRST COUNT: request lines for serials FIRST..FIRST+COUNT-1 of the seeded list
  revoke_requests() {
    awk -v first="$1" -v last=$(($1 + $2 - 1)) -v reason="$reason" \
      'NR >= first && NR <= last { print "/api/v1/certificates/" $1 "/revoke {\"reason\":\"" reason "\"}" }' "$data/serials"
  }
  revoke_requests 1 "$warmup" > "$data/warm.req"
  run_load "warm-revoke-$label" "$data/warm.req" 200 "$pid" "$base" "$admin_key" none
  revoke_requests $((warmup + 1)) "$n" > "$data/revoke.req"
  run_load "revoke-$label" "$data/revoke.req" 200 "$pid" "$base" "$admin_key" none "$pgflag"
  read -r rate p50 p99 cpu pgcpu ccpu < "$work/revoke-$label.result"
  result["revoke-$label"]="$rate $p99 $cpu $pgcpu $ccpu"
  # The CRL: seconds from the last answer until the served CRL lists every revocation.
  local answered; answered=$(cat "$work/revoke-$label.ended")
  local total=$((n + warmup)) entries=0
  for _ in $(seq 1 1200); do
    entries=$(curl -fs "$base/api/v1/crls" | jq '[.[] | select(.authority == "issuing" and .deltaOf == null)][0].entries')
    [ "$entries" -ge "$total" ] && break
    sleep 0.1
  done
  local listed; listed=$(echo "$(date +%s.%N) - $answered" | bc -l)
  curl -fs -o "$data/issuing.crl" "$base/crl/issuing.crl"
  local counted; counted=$(openssl crl -inform DER -in "$data/issuing.crl" -noout -text | grep -c 'Serial Number:' || true)
  [ "$counted" -eq "$total" ] || { echo "revocation ($label): the CRL lists $counted entries, not $total" >&2; exit 1; }
  result["revoke-crl-$label"]="$listed $counted $(stat -c %s "$data/issuing.crl")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # Size after the service stopped (SQLite checkpoints its WAL into the file on close).
  if [ "$provider" = Postgres ]; then
    result["revoke-size-$label"]=$("$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U postgres -d "$dbname" -At -F ' ' -c "
      SELECT pg_database_size(current_database()),
             pg_total_relation_size('\"Certificates\"'), pg_total_relation_size('\"Crls\"'), pg_total_relation_size('\"AuditEvents\"'),
             (SELECT count(*) FROM \"Certificates\"), (SELECT count(*) FROM \"Crls\"), (SELECT count(*) FROM \"AuditEvents\")")
  else
    local file="$data/certportal.db" wal=0
    [ -f "$file-wal" ] && wal=$(stat -c %s "$file-wal")
    result["revoke-size-$label"]="$(stat -c %s "$file") $wal"
  fi
}

# ---- PostgreSQL: a private cluster, durable settings (fsync on) -----------------------------------------------------
if [ $postgres = 1 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  pgdata="$work/pgdata"; pgport=$(free_port)
  mkdir -p "$pgdata"; chown postgres "$pgdata"
  runuser -u postgres -- "$pgbin/initdb" -D "$pgdata" -A trust -U postgres -E UTF8 --locale=C >/dev/null
  runuser -u postgres -- "$pgbin/pg_ctl" start -D "$pgdata" -w -l "$pgdata/server.log" \
    -o "-p $pgport -k $pgdata -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null
  pg_postmaster=$(head -1 "$pgdata/postmaster.pid")
fi

if wants sqlite-ec; then
  echo "CertPortal, SQLite, issuing CA EC-P256..." >&2
  portal_run sqlite-ec Sqlite EC-P256 "$enrollments"
fi
if [ $postgres = 1 ] && wants pg-ec; then
  echo "CertPortal, PostgreSQL, issuing CA EC-P256..." >&2
  portal_run pg-ec Postgres EC-P256 "$enrollments"
fi
if wants sqlite-rsa; then
  echo "CertPortal, SQLite, issuing CA RSA-3072..." >&2
  portal_run sqlite-rsa Sqlite RSA-3072 "$rsa_enrollments"
fi
if [ $revocation = 1 ]; then
  echo "Revocation, SQLite, $revocations certificates..." >&2
  revocation_run sqlite-ec Sqlite "$revocations"
  if [ $postgres = 1 ]; then
    echo "Revocation, PostgreSQL, $revocations certificates..." >&2
    revocation_run pg-ec Postgres "$revocations"
  fi
fi

# ---- cfssl, the reference measured alone (--only=cfssl without an EC-P256 CertPortal row) -------------------------
if [ -n "${cfpid:-}" ] && [ -z "${result[cfssl-sqlite-ec]:-}${result[cfssl-pg-ec]:-}" ]; then
  echo "cfssl serve..." >&2
  cfssl_row cfssl
fi

# ---- bare Kestrel returning the look-up's bytes ---------------------------------------------------------------------
if wants kestrel && [ -f "$work/lookup-body.json" ]; then
echo "Kestrel baseline..." >&2
kport=$(free_port)
ASPNETCORE_ENVIRONMENT=Production dotnet "$bench_dll" --serve-bytes "$work/lookup-body.json" "http://127.0.0.1:$kport" "$work/ocsp-body.der" > "$work/kestrel.log" 2>&1 &
kpid=$!; pids+=("$kpid")
wait_http "http://127.0.0.1:$kport/api/v1/directory/bench1@example.com/certificates"
read -r rate p99 cpu gcpu < <(wrk_run "http://127.0.0.1:$kport/api/v1/directory/bench1@example.com/certificates?usage=encryption" "$kpid")
result[kestrel]="$rate $p99 $cpu $gcpu"
read -r rate p99 cpu gcpu < <(wrk_run "http://127.0.0.1:$kport$ocsp_path" "$kpid")
result[kestrel-ocsp]="$rate $p99 $cpu $gcpu"
fi

# ---- openssl speed: RSA-3072 signatures on every core ---------------------------------------------------------------
rsa_signs=
if wants openssl && [ -z "${result[rsa-sqlite-rsa]:-}" ]; then
  echo "openssl speed -multi $cores rsa3072..." >&2
  rsa_signs=$(rsa_speed 3072)
fi
# RSA-2048, the OCSP responders' key: the reference of the OCSP-with-nonce rows (one signature per response).
rsa2048_signs=
if wants openssl && [ -n "${result[ocsp-nonce-sqlite-ec]:-}${result[ocsp-nonce-pg-ec]:-}${result[ocsp-nonce-sqlite-rsa]:-}" ]; then
  echo "openssl speed -multi $cores rsa2048..." >&2
  rsa2048_signs=$(rsa_speed 2048)
fi

# ---- a 1,000,000-entry CRL through the product's signer -----------------------------------------------------------
if [ $bigcrl = 1 ]; then
  echo "CRL with 1,000,000 entries..." >&2
  result[crl]=$(dotnet "$bench_dll" --crl 1000000)
fi

# ---- memory over a mixed run ----------------------------------------------------------------------------------------
if [ $memory = 1 ]; then
  echo "Memory, $memory_seconds s mixed run..." >&2
  data="$work/memory"; port=$(free_port); mkdir -p "$data"
  (cd "$data" && exec env CertPortal__DataDirectory="$data" CertPortal__AdminApiKey="$admin_key" CertPortal__PublicBaseUrl="http://127.0.0.1:$port" \
    CertPortal__Ca__KeyPassphrase=bench-passphrase-0123 CertPortal__Ca__IssuingKeyAlgorithm=EC-P256 CertPortal__Ca__RootKeyAlgorithm=EC-P384 \
    ASPNETCORE_URLS="http://127.0.0.1:$port" ASPNETCORE_ENVIRONMENT=Production Logging__LogLevel__Default=Warning dotnet "$portal_dll" > "$data/log" 2>&1) &
  mempid=$!; pids+=("$mempid")
  wait_http "http://127.0.0.1:$port/healthz"
  dotnet "$bench_dll" --mixed-load "http://127.0.0.1:$port" "$memory_seconds" "$mempid" > "$work/memory.out"
  result[memory]=$(grep '^| memory' "$work/memory.out")
  grep -E '^(RSS|Look-up cache|OCSP cache|Warm-up)' "$work/memory.out" >&2
  kill "$mempid"; wait "$mempid" 2>/dev/null || true
fi

# ---- the table ------------------------------------------------------------------------------------------------------
f() { printf "%'.0f" "$1"; }
ms() { printf "%.1f" "$1"; }
ms2() { printf "%.2f" "$1"; }
us() { printf "%.0f" "$(echo "1000 * $1" | bc -l)"; }
# pgms LABEL PGCPU: " + N ms PostgreSQL" on the PostgreSQL rows (the cluster's CPU per request beside the service's)
pgms() { case "$1" in pg-*) printf " + %.2f ms PostgreSQL" "$2" ;; esac; }
# gen CLIENTCPU: the load generator's CPU per request ("; wrk 31 µs CPU")
gen() { printf "; %s %.0f µs CPU" "$client" "$(echo "1000 * $1" | bc -l)"; }
# ratio VALUE REFERENCE (no reference: not measured in this run, see --only)
#   one decimal: a ratio of 69.7 % printed as "70 %" read as the RSA-3072 target met in session 15's final run
ratio() { if [ -n "${2:-}" ]; then printf "%.1f %%" "$(echo "100 * $1 / $2" | bc -l)"; else printf -- "-"; fi; }
# cfssl_cell KEY: the reference cell of cfssl's row(s) under KEY (cfssl-LABEL: the mean of the runs before and after
# the row, each rate shown; cfssl: measured alone)
cfssl_cell() {
  local rate p99 cpu ccpu
  read -r rate p99 cpu ccpu <<< "${result[$1]:-}"
  if [ -z "${rate:-}" ]; then echo "cfssl serve: not measured"; return; fi
  local around=
  [ -n "${result[${1/cfssl/cfssl-before}]:-}" ] && around=" (before $(f "${result[${1/cfssl/cfssl-before}]%% *}")/s, after $(f "${result[${1/cfssl/cfssl-after}]%% *}")/s)"
  echo "cfssl serve: $(f "$rate")/s$around, p99 $(ms "$p99") ms, $(ms2 "$cpu") ms CPU$(gen "$ccpu")"
}
read -r k_rate k_p99 k_cpu k_gen <<< "${result[kestrel]:-}"
read -r ko_rate ko_p99 ko_cpu ko_gen <<< "${result[kestrel-ocsp]:-}"
echo
echo "| path | CertPortal | reference | ratio | target |"
echo "|---|---|---|---|---|"
for label in sqlite-ec pg-ec; do
  [ -n "${result[enroll-$label]:-}" ] || continue
  read -r r p c pc cc <<< "${result[enroll-$label]}"
  db=$([ "$label" = sqlite-ec ] && echo SQLite || echo PostgreSQL)
  key=$([ -n "${result[cfssl-$label]:-}" ] && echo "cfssl-$label" || echo cfssl)
  cf_rate=$(echo "${result[$key]:-}" | cut -d' ' -f1)
  echo "| enrollment, issuing CA EC-P256, $db, $clients clients | $(f "$r")/s, p99 $(ms "$p") ms, $(ms2 "$c") ms CPU$(pgms "$label" "$pc")$(gen "$cc") | $(cfssl_cell "$key") | $(ratio "$r" "${cf_rate:-}") | ≥ 50 %, p99 ≤ 50 ms |"
done
# The reference alone (--only without an EC-P256 CertPortal row).
[ -n "${result[cfssl]:-}" ] && echo "| enrollment reference, $clients clients | | $(cfssl_cell cfssl) | | |"
if [ -n "${result[enroll-sqlite-rsa]:-}" ]; then
  read -r r p c _ cc <<< "${result[enroll-sqlite-rsa]}"
  rsa_cell="not measured signs/s"
  if [ -n "${result[rsa-sqlite-rsa]:-}" ]; then
    read -r rsa_signs rsa_before rsa_after <<< "${result[rsa-sqlite-rsa]}"
    rsa_cell="$(f "$rsa_signs") signs/s (before $(f "$rsa_before"), after $(f "$rsa_after"))"
  elif [ -n "$rsa_signs" ]; then
    rsa_cell="$(f "$rsa_signs") signs/s"
  fi
  echo "| enrollment, issuing CA RSA-3072, SQLite, $clients clients | $(f "$r")/s, p99 $(ms "$p") ms, $(ms2 "$c") ms CPU$(gen "$cc") | openssl speed -multi $cores rsa3072: $rsa_cell | $(ratio "$r" "$rsa_signs") | ≥ 70 % |"
fi
for label in sqlite-ec pg-ec sqlite-rsa; do
  [ -n "${result[tokens-$label]:-}" ] || continue
  read -r r p c pc cc <<< "${result[tokens-$label]}"
  echo "| token creation ($label), $clients clients | $(f "$r")/s, p99 $(ms "$p") ms, $(ms2 "$c") ms CPU$(pgms "$label" "$pc")$(gen "$cc") | 1,000/s | $(ratio "$r" 1000) | ≥ 100 % |"
done
for label in sqlite-ec pg-ec; do
  [ -n "${result[lookup-$label]:-}" ] || continue
  read -r r p c g <<< "${result[lookup-$label]}"
  echo "| look-up ($label), wrk 32 connections | $(f "$r")/s, p99 $(ms "$p") ms, $(us "$c") µs CPU; wrk $(us "$g") µs CPU | $([ -n "${k_rate:-}" ] && echo "Kestrel, same bytes: $(f "$k_rate")/s, p99 $(ms "$k_p99") ms, $(us "$k_cpu") µs CPU; wrk $(us "$k_gen") µs CPU" || echo "Kestrel: not measured") | $(ratio "$r" "${k_rate:-}") | ≥ 50 %, p99 ≤ 10 ms |"
done
for label in sqlite-ec pg-ec sqlite-rsa; do
  [ -n "${result[ocsp-$label]:-}" ] || continue
  read -r r p c g <<< "${result[ocsp-$label]}"
  echo "| OCSP GET from cache ($label), wrk 32 connections | $(f "$r")/s, p99 $(ms "$p") ms, $(us "$c") µs CPU; wrk $(us "$g") µs CPU | $([ -n "${ko_rate:-}" ] && echo "Kestrel, same bytes: $(f "$ko_rate")/s, p99 $(ms "$ko_p99") ms, $(us "$ko_cpu") µs CPU; wrk $(us "$ko_gen") µs CPU" || echo "Kestrel: not measured") | $(ratio "$r" "${ko_rate:-}") | ≥ 10,000/s, p99 ≤ 10 ms |"
done
for label in sqlite-ec pg-ec sqlite-rsa; do
  [ -n "${result[ocsp-nonce-$label]:-}" ] || continue
  read -r r p c g <<< "${result[ocsp-nonce-$label]}"
  echo "| OCSP POST with nonce, signed per request ($label), wrk 32 connections | $(f "$r")/s, p99 $(ms "$p") ms, $(us "$c") µs CPU; wrk $(us "$g") µs CPU | openssl speed -multi $cores rsa2048: $([ -n "$rsa2048_signs" ] && f "$rsa2048_signs" || echo "not measured") signs/s | $(ratio "$r" "$rsa2048_signs") | (none) |"
done
if [ $revocation = 1 ]; then
  mib() { printf "%.1f MiB" "$(echo "$1 / 1048576" | bc -l)"; }
  for label in sqlite-ec pg-ec; do
    [ -n "${result[revoke-$label]:-}" ] || continue
    read -r r p c pc cc <<< "${result[revoke-$label]}"
    read -r listed counted crlbytes <<< "${result[revoke-crl-$label]}"
    echo "| revocation ($label), $(f "$revocations") with $clients clients ($reason) | $(f "$r")/s, p99 $(ms "$p") ms, $(ms2 "$c") ms CPU$(pgms "$label" "$pc")$(gen "$cc"); $(printf "%.1f" "$(echo "$revocations / $r" | bc -l)") s | 100,000 in 60 s: 1,667/s | $(ratio "$r" 1667) | ≥ 100 % |"
    echo "| CRL lists every revocation ($label) | $(printf "%.1f" "$listed") s after the last answer ($(f "$counted") entries, $(mib "$crlbytes")) | Crl:PublishDelay 3 s | | |"
    if [ "$label" = pg-ec ]; then
      read -r dbsize certs crls audit ncerts ncrls naudit <<< "${result[revoke-size-$label]}"
      echo "| database after it ($label) | $(mib "$dbsize"): Certificates $(mib "$certs") ($(f "$ncerts") rows), AuditEvents $(mib "$audit") ($(f "$naudit") rows), Crls $(mib "$crls") ($ncrls rows) | | | rows, not CRL copies |"
    else
      read -r file wal <<< "${result[revoke-size-$label]}"
      echo "| database after it ($label) | SQLite file $(mib "$file") (WAL $(mib "$wal")) for $(f "$counted") revoked certificates; the CRL is $(mib "$crlbytes") | | | rows, not CRL copies |"
    fi
  done
fi
[ -n "${result[crl]:-}" ] && echo "${result[crl]% |} | | | ≤ 5 s, < 1 GiB peak |"
[ -n "${result[memory]:-}" ] && echo "${result[memory]}"
echo
echo "POST rows driven by $([ "$client" = wrk ] && echo "wrk -t1 -c$clients with bench/post.lua (p50/p99 as measured, without wrk's coordinated-omission correction)" || echo "curl --parallel --parallel-max $clients"); CPU per request: the server's, then the load generator's"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end (other work on the machine)"
echo "$(nproc) cores, $(dotnet --version) SDK, $(openssl version | cut -d' ' -f1-2), cfssl $(cfssl version 2>/dev/null | awk '/Version/ {print $2}'), $(date -u +%Y-%m-%d)"
