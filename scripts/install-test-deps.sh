#!/usr/bin/env bash
# Installs the real programs the tests run against (never mocks of them), from Debian's packages,
# only when something is missing. Safe to run again. Needs root or sudo for apt-get.
set -euo pipefail

# program -> Debian package that provides it
declare -A needed=(
  [openssl]=openssl
  [certutil]=libnss3-tools
  [gpgsm]=gpgsm
  [dirmngr]=dirmngr
  [gpg-agent]=gpg-agent
  [slapd]=slapd
  [ldapsearch]=ldap-utils
  [chromium]=chromium
  [node]=nodejs
  [npm]=npm
  [pg_ctlcluster]=postgresql
  [nginx]=nginx-light
  [strace]=strace
)

missing=()
for program in "${!needed[@]}"; do
  # slapd, nginx and the PostgreSQL tools live in sbin / versioned directories, not always on PATH.
  if command -v "$program" >/dev/null 2>&1 || [ -x "/usr/sbin/$program" ]; then continue; fi
  missing+=("${needed[$program]}")
done

# pkilint (the S/MIME BR lint matrix) is Python and needs the cryptography package.
if ! python3 -c 'import cryptography' >/dev/null 2>&1; then missing+=(python3-cryptography); fi
# The tests' SMTP server (python3-aiosmtpd) is a module, not a program: ask Debian's own interpreter.
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing+=(python3-aiosmtpd)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

# As root (CI) there is no sudo; an empty "$sudo -E" would run "-E" as the command.
sudo=""
sudo_env=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; sudo_env="sudo -E"; fi
echo "Installing test dependencies: ${missing[*]}"
# A private slapd and PostgreSQL are started by the tests themselves: keep the packages'
# system services from starting (policy-rc.d) and from asking debconf questions.
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  created_policy=1
fi
trap '[ $created_policy -eq 1 ] && $sudo rm -f "$policy"' EXIT
$sudo apt-get update -qq
$sudo_env apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
