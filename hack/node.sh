#!/usr/bin/env bash
# A real Kubernetes node on this machine for the local control plane: containerd + runc + the CNI bridge
# plugin, kubelet, kube-proxy (iptables), kube-scheduler and CoreDNS, all built or installed here
# (hack/build-node.sh, hack/install-test-deps.sh --node). Needs root. One node per machine: kube-proxy's
# iptables chains and the pod cgroups are machine-wide.
#
#   hack/node.sh up     [--name NAME]   start the control plane NAME in node mode (hack/local-cluster.sh) and the
#                                       node; print `export KUBECONFIG=...`
#   hack/node.sh down   [--name NAME]   stop the node (pods, kubelet, containerd, kube-proxy, CoreDNS, scheduler)
#                                       and its control plane, and undo every host change `up` made
#   hack/node.sh status [--name NAME]   exit 0 when the node is Ready
#   hack/node.sh load IMAGE.tar...      import docker-archive images into the node's containerd
#
# Addresses: the node (and the apiserver, so pods reach it through the `kubernetes` Service) listen on
# NODE_IP (default 10.250.0.1), an address `up` adds to the loopback interface (this kernel has no dummy links); pods get 10.244.0.0/24 on the bridge kocni0; Services
# 10.96.0.0/16, cluster DNS 10.96.0.10 (CoreDNS, cluster.local only: it forwards nothing anywhere).
# State lives under ${KEYSTONE_OPERATOR_CACHE:-~/.cache/keystone-operator}/nodes/NAME; runtime sockets under
# /run/keystone-operator/NAME. Host changes (sysctls the kubelet and the bridge set, iptables chains, the
# interfaces, pod cgroups, mounts, directories the kubelet and containerd create) are recorded at `up` and
# undone by `down`. Processes are stopped by the PIDs `up` recorded.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${KEYSTONE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator}
NODE_IP=${NODE_IP:-10.250.0.1}
POD_CIDR=10.244.0.0/24
DNS_IP=10.96.0.10
BRIDGE=kocni0
SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory net.ipv4.ip_forward
  net.bridge.bridge-nf-call-iptables net.ipv4.conf.all.route_localnet)
# directories the kubelet, containerd and CNI create whatever their configured roots are
SYSTEM_DIRS=(/var/lib/kubelet /var/log/containers /var/log/pods /run/containerd /run/netns /var/lib/cni
  /etc/cni /opt/cni /run/flannel /var/lib/kube-proxy)

cmd=${1:-}; shift || true
name=dev
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ "$name" =~ ^[a-z0-9-]+$ ]] || { echo "node: --name must match [a-z0-9-]+" >&2; exit 2; }
dir="$CACHE/nodes/$name"
run="/run/keystone-operator/$name"
node="$name-node"
sock="$run/containerd.sock"
log() { echo "node[$name]: $*" >&2; }

need_root() {
  if [ "$(id -u)" != 0 ]; then
    log "must run as root: the node creates interfaces, iptables rules, cgroups and mounts"
    exit 1
  fi
}

pid_alive() { [ -f "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

stop_one() { # stop_one NAME [SECONDS]: TERM, wait, KILL the PID `up` recorded
  local p=$1 secs=${2:-10} pid
  [ -f "$dir/$p.pid" ] || return 0
  pid=$(cat "$dir/$p.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((secs * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/$p.pid"
}

wait_for() { # wait_for SECONDS PROCESS COMMAND...
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ! pid_alive "$what"; then
      log "$what exited; last lines of $dir/logs/$what.log:"; tail -n 30 "$dir/logs/$what.log" >&2 || true; return 1
    fi
    if [ $SECONDS -ge $end ]; then
      log "$what not ready in ${secs}s; last lines of $dir/logs/$what.log:"; tail -n 30 "$dir/logs/$what.log" >&2 || true
      return 1
    fi
    sleep 0.3
  done
}

start_bg() { # start_bg NAME COMMAND...: a session leader with its log, PID recorded
  local p=$1; shift
  setsid "$@" </dev/null >"$dir/logs/$p.log" 2>&1 8>&- 9>&- &
  echo $! > "$dir/$p.pid"
}

sign() { # sign NAME SUBJECT EXT: a key and certificate signed by the cluster CA
  local n=$1 subj=$2 ext=$3 p="$dir/pki" ca="$cluster/pki"
  [ -f "$p/$n.crt" ] && return 0
  printf '%s\n' "$ext" > "$p/$n.ext"
  openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$p/$n.key" -out "$p/$n.csr" 2>/dev/null
  openssl x509 -req -in "$p/$n.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial -days 3650 \
    -extfile "$p/$n.ext" -out "$p/$n.crt" 2>/dev/null
  chmod 600 "$p/$n.key"
}

kubeconfig_for() { # kubeconfig_for NAME: a kubeconfig with the client certificate NAME
  cat > "$dir/$1.kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://$NODE_IP:$(cat "$cluster/apiserver.port")", certificate-authority: "$cluster/pki/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$dir/pki/$1.crt", client-key: "$dir/pki/$1.key"}
contexts:
- name: local
  context: {cluster: local, user: $1}
current-context: local
KCFG
  chmod 600 "$dir/$1.kubeconfig"
}

kubectl_() { "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }

record_host_state() {
  # what `down` restores: written once per `up` that finds no node running
  : > "$dir/host/sysctl"
  local s
  for s in "${SYSCTLS[@]}"; do
    [ -e "/proc/sys/${s//.//}" ] && echo "$s=$(sysctl -n "$s")" >> "$dir/host/sysctl"
  done
  : > "$dir/host/created-dirs"
  for s in "${SYSTEM_DIRS[@]}"; do [ -e "$s" ] || echo "$s" >> "$dir/host/created-dirs"; done
  : > "$dir/host/chains"
  local t
  for t in filter nat mangle; do
    iptables -t "$t" -S 2>/dev/null | awk -v t="$t" '$1=="-N"{print t" "$2}' >> "$dir/host/chains"
  done
  : > "$dir/host/cgroups"
  for s in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do [ -d "$s" ] && echo "$s" >> "$dir/host/cgroups"; done
  true
}

write_configs() {
  mkdir -p "$dir/cni/net.d" "$dir/cni/ipam" "$dir/kubelet" "$dir/pod-logs" "$dir/containerd" "$run"
  cat > "$dir/cni/net.d/10-keystone-operator.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "keystone-operator-$name",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": "$dir/cni/ipam", "ranges": [[{"subnet": "$POD_CIDR"}]],
               "routes": [{"dst": "0.0.0.0/0"}]}
    }
  ]
}
JSON
  # restrict_oom_score_adj and no oom_score: the sandbox cannot lower OOM scores (no CAP_SYS_RESOURCE).
  # Nothing is ever pulled: the sandbox image is the pause binary built by hack/build-node.sh.
  cat > "$dir/containerd/config.toml" <<TOML
version = 2
root = "$dir/containerd/root"
state = "$run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$run/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
TOML
  cat > "$dir/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# this machine: cgroup v1 (kubelet >= 1.35 refuses it unless told), no systemd, no CAP_SYS_RESOURCE, swap
failCgroupV1: false
cgroupDriver: cgroupfs
oomScoreAdj: 0
failSwapOn: false
containerRuntimeEndpoint: unix://$sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $dir/pki/kubelet-serving.crt
tlsPrivateKeyFile: $dir/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $cluster/pki/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
# pods resolve through CoreDNS only, never the machine's resolver
resolvConf: ""
podLogsDir: $dir/pod-logs
serializeImagePulls: false
evictionHard: {memory.available: 200Mi, nodefs.available: 5%, imagefs.available: 5%, nodefs.inodesFree: 2%}
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
syncFrequency: ${KUBELET_SYNC_FREQUENCY:-20s}
maxPods: 110
YAML
  cat > "$dir/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/kube-proxy.kubeconfig}
hostnameOverride: $node
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
# leave the machine's conntrack sysctls and route_localnet alone
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false, syncPeriod: 30s, minSyncPeriod: 1s}
YAML
  cat > "$dir/Corefile" <<COREFILE
.:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $dir/coredns.kubeconfig local
        pods insecure
        ttl 5
    }
    cache 5
}
COREFILE
}

cluster_objects() {
  # CoreDNS's read access and the kube-dns Service (selector-less: CoreDNS runs beside the kubelet, not as a pod)
  kubectl_ apply --server-side --field-manager keystone-operator-node -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:keystone-operator:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:keystone-operator:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:keystone-operator:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:keystone-operator:coredns"}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_IP
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: keystone-operator-node}
addressType: IPv4
endpoints: [{addresses: ["$NODE_IP"], conditions: {ready: true}}]
ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
YAML
}

node_ready() {
  [ "$(kubectl_ get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

import_images() { # import_images TAR...: docker-archives into the k8s.io namespace the CRI uses
  # An archive imported before (same path, size and modification time) whose image containerd still has is
  # skipped.
  local t ref id
  touch "$dir/imported"
  for t in "$@"; do
    ref=$(tar -xOf "$t" manifest.json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["RepoTags"][0])')
    id="$t:$(stat -c %s:%Y "$t")"
    if grep -qxF "$id $ref" "$dir/imported" \
       && [ -n "$(ctr --address "$sock" -n k8s.io images ls -q "name==$ref" 2>/dev/null)" ]; then
      continue
    fi
    ctr --address "$sock" -n k8s.io images import --no-unpack=false "$t" >/dev/null
    { grep -vF " $ref" "$dir/imported" || true; echo "$id $ref"; } > "$dir/imported.new"
    mv "$dir/imported.new" "$dir/imported"
  done
}

up() {
  need_root
  local bin
  "$here/install-test-deps.sh" --node
  bin=$("$here/build-node.sh")
  PAUSE_IMAGE_TAR=$("$here/images.sh" pause)
  PAUSE_IMAGE=$("$here/images.sh" ref pause)
  mkdir -p "$CACHE/nodes"
  exec 8>"$CACHE/nodes/.lock"
  flock -w 120 8 || { log "another hack/node.sh holds $CACHE/nodes/.lock"; exit 1; }
  local other
  for other in "$CACHE"/nodes/*/kubelet.pid; do
    [ -f "$other" ] || continue
    local oname; oname=$(basename "$(dirname "$other")")
    if [ "$oname" != "$name" ] && kill -0 "$(cat "$other")" 2>/dev/null; then
      log "the node '$oname' is running; one node per machine (hack/node.sh down --name $oname)"
      exit 1
    fi
  done
  mkdir -p "$dir/host"
  [ -f "$dir/host/sysctl" ] || record_host_state
  ip addr show dev lo | grep -q " $NODE_IP/32 " || ip addr add "$NODE_IP/32" dev lo
  eval "$(NODE_IP=$NODE_IP "$here/local-cluster.sh" up --name "$name" --node-ip "$NODE_IP" 8>&-)"
  cluster="$CACHE/clusters/$name"
  KUBECTL="$(dirname "$("$here/build-control-plane.sh")")/bin/kubectl"
  mkdir -p "$dir/logs" "$dir/pki" "$dir/host"
  if pid_alive kubelet && node_ready; then
    log "reusing the running node"
    echo "export KUBECONFIG=$KUBECONFIG"
    return 0
  fi
  local t0=$SECONDS
  stop_all
  sign kubelet "/O=system:nodes/CN=system:node:$node" "extendedKeyUsage=clientAuth"
  sign kubelet-serving "/CN=$node" "subjectAltName=IP:$NODE_IP,DNS:$node
extendedKeyUsage=serverAuth"
  sign kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
  sign kube-scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
  sign coredns "/CN=system:keystone-operator:coredns" "extendedKeyUsage=clientAuth"
  local k
  for k in kubelet kube-proxy kube-scheduler coredns; do kubeconfig_for "$k"; done
  write_configs

  log "starting containerd"
  start_bg containerd containerd --config "$dir/containerd/config.toml"
  wait_for 30 containerd ctr --address "$sock" version
  import_images "$PAUSE_IMAGE_TAR"

  log "starting kube-scheduler, CoreDNS, kube-proxy, kubelet ($node)"
  start_bg kube-scheduler "$bin/kube-scheduler" --kubeconfig "$dir/kube-scheduler.kubeconfig" --leader-elect=false \
    --bind-address 127.0.0.1 --secure-port 10259 --v 1
  cluster_objects
  start_bg coredns "$bin/coredns" -conf "$dir/Corefile"
  start_bg kube-proxy "$bin/kube-proxy" --config "$dir/kube-proxy.yaml" --v 1
  start_bg kubelet "$bin/kubelet" --config "$dir/kubelet/config.yaml" --kubeconfig "$dir/kubelet.kubeconfig" \
    --root-dir "$dir/kubelet/root" --hostname-override "$node" --node-ip "$NODE_IP" --v 1
  wait_for 120 kubelet node_ready
  log "node $node Ready in $((SECONDS - t0))s; logs in $dir/logs"
  echo "export KUBECONFIG=$KUBECONFIG"
}

unmount_under() { # every mount below the given prefixes, deepest first
  local prefix m
  for prefix in "$@"; do
    awk -v p="$prefix/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
  done
}

stop_all() {
  local bin
  bin=$("$here/build-node.sh")
  if pid_alive kubelet; then stop_one kubelet 10; fi
  if pid_alive containerd; then
    # every pod through the CRI: containers stopped, the CNI DEL run (veths, addresses), sandboxes removed
    timeout 90 "$bin/crictl" --runtime-endpoint "unix://$sock" --timeout 60s rmp --all --force >/dev/null 2>&1 \
      || log "crictl rmp did not finish; stopping containerd anyway"
  fi
  stop_one containerd 15
  stop_one kube-proxy 5
  stop_one coredns 5
  stop_one kube-scheduler 5
  if [ -f "$dir/kube-proxy.yaml" ]; then
    "$bin/kube-proxy" --cleanup --config "$dir/kube-proxy.yaml" >"$dir/logs/kube-proxy-cleanup.log" 2>&1 || true
  fi
  unmount_under "$dir/kubelet" "$run" "$dir/containerd"
}

undo_host() {
  [ -d "$dir/host" ] || return 0
  local t c
  # chains that were not there before `up` (the kubelet's canaries, anything kube-proxy --cleanup left)
  for t in filter nat mangle; do
    iptables -t "$t" -S 2>/dev/null | awk '$1=="-N"{print $2}' | while read -r c; do
      case "$c" in KUBE-*|CNI-*) ;; *) continue ;; esac
      grep -qx "$t $c" "$dir/host/chains" 2>/dev/null && continue
      iptables -t "$t" -S 2>/dev/null | awk -v c="$c" '$1=="-A" && $0 ~ ("-j " c "( |$)") {sub(/^-A/, "-D"); print}' \
        | while read -r rule; do eval "iptables -t $t $rule" 2>/dev/null || true; done
      iptables -t "$t" -F "$c" 2>/dev/null || true
    done
    iptables -t "$t" -S 2>/dev/null | awk '$1=="-N"{print $2}' | while read -r c; do
      case "$c" in KUBE-*|CNI-*) ;; *) continue ;; esac
      grep -qx "$t $c" "$dir/host/chains" 2>/dev/null || iptables -t "$t" -X "$c" 2>/dev/null || true
    done
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  ip addr del "$NODE_IP/32" dev lo 2>/dev/null || true
  # pod cgroups the kubelet created (deepest first), unless they were there before
  local cg
  for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$cg" ] || continue
    grep -qx "$cg" "$dir/host/cgroups" 2>/dev/null && continue
    find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  if [ -f "$dir/host/sysctl" ]; then
    while IFS= read -r kv; do sysctl -q -w "$kv" >/dev/null 2>&1 || true; done < "$dir/host/sysctl"
  fi
  if [ -f "$dir/host/created-dirs" ]; then
    while IFS= read -r d; do
      [ -n "$d" ] || continue
      unmount_under "$d"
      rm -rf "$d"
    done < "$dir/host/created-dirs"
  fi
  rm -rf "$dir/host" "$run"
}

down() {
  need_root
  [ -d "$dir" ] || exit 0
  mkdir -p "$CACHE/nodes"
  exec 8>"$CACHE/nodes/.lock"
  flock -w 120 8 || { log "another hack/node.sh holds $CACHE/nodes/.lock"; exit 1; }
  stop_all
  "$here/local-cluster.sh" down --name "$name"
  undo_host
  log "stopped; host changes undone"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  status)
    cluster="$CACHE/clusters/$name"
    KUBECTL="$(dirname "$("$here/build-control-plane.sh")")/bin/kubectl"
    KUBECONFIG=$cluster/kubeconfig
    pid_alive kubelet && node_ready
    ;;
  load)
    need_root
    import_images "${args[@]}"
    ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
