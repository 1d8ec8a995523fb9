#!/usr/bin/env bash
# Runs every CertPortal test against real software (openssl, NSS, gpgsm, slapd, Chromium),
# installing what is missing first. Ends with one line: "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
results="$root/artifacts/test-results"
rm -rf "$results"
mkdir -p "$results"

scripts/install-test-deps.sh || { echo "installing test dependencies failed"; echo "0 passed, 1 failed"; exit 1; }

# The browser bundle (pkijs for in-browser CSR and PKCS#12) is built from web/ with its lockfile.
if ! (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent); then
  echo "building the browser bundle failed"; echo "0 passed, 1 failed"; exit 1
fi

# 1. The browser bundle's own tests (Node's test runner; Chromium and Node WebCrypto).
(cd web && node --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$results/web.tap" test/*.test.mjs)
web_pass=$(grep -E '^# pass ' "$results/web.tap" | awk '{print $3}' | tail -1)
web_fail=$(grep -E '^# fail ' "$results/web.tap" | awk '{print $3}' | tail -1)
web_pass=${web_pass:-0}; web_fail=${web_fail:-1}

# 2. The .NET suite: API, oracle, directory, escrow and browser tests.
dotnet test CertPortal.sln --logger "trx;LogFileName=dotnet.trx" \
  --results-directory "$results"
trx=$(find "$results" -name '*.trx' | head -1)
if [ -n "$trx" ]; then
  counters=$(grep -o '<Counters [^>]*>' "$trx")
  attr() { echo "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'; }
  dn_pass=$(attr passed); dn_fail=$(( $(attr failed) + $(attr error) + $(attr timeout) + $(attr aborted) ))
  dn_total=$(attr total); dn_exec=$(attr executed); dn_skip=$(attr notExecuted)
  # Tests that never ran (a crashed test host) count as failed; skipped ones (each says why, e.g. pkilint
  # absent without ../shared) are reported as skipped.
  dn_fail=$(( dn_fail + dn_total - dn_exec - ${dn_skip:-0} ))
else
  dn_pass=0; dn_fail=1
fi
if [ "${dn_skip:-0}" -gt 0 ]; then
  echo "skipped, with the reason each gave:"
  grep -o 'SKIPPED[^<"]*' "$trx" | sort -u
fi

echo "web: $web_pass passed, $web_fail failed; dotnet: $dn_pass passed, $dn_fail failed, ${dn_skip:-0} skipped"
echo "$(( web_pass + dn_pass )) passed, $(( web_fail + dn_fail )) failed"
[ $(( web_fail + dn_fail )) -eq 0 ]
