#!/usr/bin/env bash
# Debian packages the tests and the local node run for real: MariaDB (the db controller's database script runs
# against it; the local node's database), PyMySQL for the system Python (the driver the Keystone image uses),
# Keystone itself (Debian's python3-keystone, Zed), uWSGI to serve it, memcached, the OpenStack client, and
# Apache with mod_wsgi (only to syntax-check the httpd site the operator renders).
# With --node, also what the real node runs (hack/node.sh): containerd, runc, the CNI plugins, iptables and
# conntrack (kube-proxy), buildah and debootstrap (the images are built here from Debian packages).
# Idempotent; needs root to install (prints the apt-get command otherwise).
set -euo pipefail
pkgs=(mariadb-server python3-pymysql python3-keystone memcached python3-openstackclient python3-keystoneauth1
  python3-pymemcache uwsgi-core uwsgi-plugin-python3 iproute2 util-linux
  apache2-bin libapache2-mod-wsgi-py3)  # apache2 -t checks the rendered httpd site
if [ "${1:-}" = --node ]; then
  pkgs+=(containerd runc containernetworking-plugins iptables conntrack buildah debootstrap)
fi
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
# No service is started: the tests run their own mariadbd and memcached. Debian's maintainer scripts start
# services through invoke-rc.d, which asks /usr/sbin/policy-rc.d first (exit 101: "not allowed"); one is put
# in place for the install only, and removed afterwards unless it was there before.
policy=/usr/sbin/policy-rc.d
ours_policy=false
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# keystone-operator hack/install-test-deps.sh: no service starts while it installs\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  ours_policy=true
fi
cleanup() { if $ours_policy; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
