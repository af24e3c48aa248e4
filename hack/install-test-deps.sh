#!/usr/bin/env bash
# Debian packages the tests run for real: MariaDB (the db controller's database script runs against it) and
# PyMySQL for the system Python (the driver the Keystone image uses). Idempotent; needs root to install.
set -euo pipefail
pkgs=(mariadb-server python3-pymysql)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-test-deps: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "install-test-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# no service is started: the tests run their own mariadbd with a private data directory
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's maintainer scripts may start a system mariadbd; the tests never use it
if command -v systemctl >/dev/null 2>&1; then systemctl stop mariadb 2>/dev/null || true; fi
pkill -x mariadbd 2>/dev/null || true
