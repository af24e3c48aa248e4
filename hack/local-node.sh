#!/usr/bin/env bash
# The local node for the embedded control plane: MariaDB and memcached as the node's "host services" on the
# node bridge, the keystone-local-node agent (plays the kubelet and, for the given namespace, the
# scheduler), and the Services that make the database host (`openstack`) and `memcached` resolve inside pods.
# Needs root (network and mount namespaces).
#
#   hack/local-node.sh up   [--name NAME] [--namespace NS] [--db-root-password PW]
#   hack/local-node.sh down [--name NAME]
#   hack/local-node.sh status [--name NAME]
#   hack/local-node.sh address [--name NAME]   (prints the node's host address: MariaDB, memcached)
#
# KUBECONFIG must point at the control plane (hack/local-cluster.sh prints it). State, MariaDB's data and
# logs live under ~/.cache/keystone-operator/node/NAME; container logs under .../NAME/logs/
# <namespace>_<pod>_<uid>/<container>.log (kubectl logs cannot reach them: there is no kubelet API).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmd=${1:-}
shift || true
name=dev
namespace=openstack
root_pw=${DB_ROOT_PASSWORD:-'root-Pa$$w0rd'}   # the sample osp-secret's DbRootPassword
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --namespace) namespace=$2; shift 2 ;;
    --db-root-password) root_pw=$2; shift 2 ;;
    *) echo "local-node: unknown option $1" >&2; exit 2 ;;
  esac
done
CACHE=${KEYSTONE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator}
dir="$CACHE/node/$name"
# Each named node has its own bridge and /24, so `dev` (make run) and `e2e` can run side by side:
# dev -> kln0, 10.251.0.0/24; any other name -> kln-<name>, 10.251.<1..200>.0/24 (from a hash of the name).
if [ "$name" = dev ]; then
  bridge=kln0 net=10.251.0
else
  bridge="kln-${name:0:11}"
  net="10.251.$(( $(printf '%s' "$name" | cksum | cut -d' ' -f1) % 200 + 1 ))"
fi
host="$net.1"
log() { echo "local-node[$name]: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "must run as root: the node creates network namespaces, veth pairs and mount namespaces"
  exit 1
fi

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() {
  local f=$1 what=$2
  if alive "$f"; then
    kill -TERM "$(cat "$f")" 2>/dev/null || true
    for _ in $(seq 1 100); do alive "$f" || break; sleep 0.1; done
    alive "$f" && kill -KILL "$(cat "$f")" 2>/dev/null || true
    log "stopped $what"
  fi
  rm -f "$f"
}

kubectl_() { "$(dirname "$("$repo/hack/build-control-plane.sh")")/bin/kubectl" "$@"; }

host_service() {
  # A selector-less Service plus an EndpointSlice at the node's host address: the node's /etc/hosts for pods
  # resolves <svc>.<ns>.svc to it, as cluster DNS would to a database Service.
  local svc=$1 port=$2
  kubectl_ apply --server-side --field-manager keystone-local-node -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: $svc, namespace: $namespace, labels: {app.kubernetes.io/managed-by: keystone-local-node}}
spec:
  ports: [{name: main, port: $port, targetPort: $port, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $svc-local-node
  namespace: $namespace
  labels: {kubernetes.io/service-name: $svc, endpointslice.kubernetes.io/managed-by: keystone-local-node}
addressType: IPv4
ports: [{name: main, port: $port, protocol: TCP}]
endpoints: [{addresses: ["$host"], conditions: {ready: true}}]
YAML
}

case "$cmd" in
  up)
    [ -n "${KUBECONFIG:-}" ] || { log "KUBECONFIG is not set (eval \"\$(hack/local-cluster.sh up)\")"; exit 1; }
    "$repo/hack/install-test-deps.sh"
    mkdir -p "$dir/logs"
    ip link show "$bridge" >/dev/null 2>&1 || ip link add "$bridge" type bridge
    ip -4 addr show dev "$bridge" | grep -q "$host/24" || ip addr add "$host/24" dev "$bridge"
    ip link set "$bridge" up

    # The database belongs to one control plane: Keystone's rows (credentials encrypted with that control
    # plane's credential-key Secret, users, the catalog) mean nothing to a new one, whose etcd starts empty.
    cluster_id=$(kubectl_ get namespace kube-system -o jsonpath='{.metadata.uid}')
    if [ -f "$dir/cluster-id" ] && [ "$(cat "$dir/cluster-id")" != "$cluster_id" ]; then
      log "new control plane: starting from an empty database"
      stop_pid "$dir/mariadb.pid" MariaDB
      rm -rf "$dir/mariadb"
    fi
    echo "$cluster_id" >"$dir/cluster-id"
    if ! alive "$dir/mariadb.pid"; then
      t=$(date +%s%N)
      if [ ! -d "$dir/mariadb/mysql" ]; then
        mariadb-install-db --no-defaults --user=root --auth-root-authentication-method=normal --skip-test-db \
          --datadir="$dir/mariadb" >"$dir/mariadb-install.log" 2>&1
        fresh=1
      fi
      mariadbd --no-defaults --user=root --bind-address="$host" --port=3306 --skip-name-resolve \
        --datadir="$dir/mariadb" --socket="$dir/mysqld.sock" --pid-file="$dir/mariadb.pid" \
        >"$dir/mariadb.log" 2>&1 9>&- &
      for _ in $(seq 1 100); do [ -S "$dir/mysqld.sock" ] && break; sleep 0.1; done
      if [ "${fresh:-0}" = 1 ]; then
        # Pods connect from the bridge's /24 as root (the db-create Job) with the sample's root password.
        P="$root_pw" NET="$net" /usr/bin/python3 - "$dir/mysqld.sock" <<'PY'
import os, sys, pymysql
c = pymysql.connect(unix_socket=sys.argv[1], user="root", autocommit=True)
cur = c.cursor()
cur.execute("ALTER USER 'root'@'localhost' IDENTIFIED BY %s", (os.environ["P"],))
net = os.environ["NET"]
cur.execute("CREATE USER IF NOT EXISTS 'root'@'" + net + ".%%' IDENTIFIED BY %s", (os.environ["P"],))
cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'" + net + ".%' WITH GRANT OPTION")
PY
      fi
      log "MariaDB on $host:3306 in $(( ($(date +%s%N) - t) / 1000000 )) ms (data: $dir/mariadb)"
    fi
    if ! alive "$dir/memcached.pid"; then
      memcached -u root -l "$host" -p 11211 -m 64 -P "$dir/memcached.pid" -d -c 1024
      for _ in $(seq 1 50); do [ -s "$dir/memcached.pid" ] && break; sleep 0.1; done
      log "memcached on $host:11211"
    fi
    if ! alive "$dir/node.pid"; then
      (cd "$repo" && cargo build --locked --quiet -p keystone-local-node)
      "$repo/target/debug/keystone-local-node" --node-name "local-node-$name" --schedule-namespace "$namespace" \
        --bridge "$bridge" --host-address "$host" --state-dir "$dir/state" --log-dir "$dir/logs" \
        >"$dir/node.log" 2>&1 9>&- &
      echo $! >"$dir/node.pid"
      for _ in $(seq 1 100); do grep -q "node ready" "$dir/node.log" && break; sleep 0.1; done
      grep -q "node ready" "$dir/node.log" || { log "the node did not start:"; cat "$dir/node.log" >&2; exit 1; }
      log "node local-node-$name up (schedules namespace $namespace; agent log $dir/node.log)"
    fi
    kubectl_ create namespace "$namespace" --dry-run=client -o yaml | kubectl_ apply -f - >/dev/null
    host_service openstack 3306
    host_service memcached 11211
    log "pods resolve openstack.$namespace.svc (MariaDB) and memcached.$namespace.svc; container logs in $dir/logs"
    ;;
  down)
    stop_pid "$dir/node.pid" "the node agent"
    stop_pid "$dir/memcached.pid" memcached
    stop_pid "$dir/mariadb.pid" MariaDB
    ip link del "$bridge" 2>/dev/null || true
    ;;
  address)
    echo "$host"
    ;;
  status)
    for p in node mariadb memcached; do
      if alive "$dir/$p.pid"; then echo "$p: running (pid $(cat "$dir/$p.pid"))"; else echo "$p: stopped"; fi
    done
    ;;
  *) echo "usage: hack/local-node.sh up|down|status [--name NAME] [--namespace NS]" >&2; exit 2 ;;
esac
