#!/usr/bin/env bash
# A real local Kubernetes control plane on 127.0.0.1: etcd + kube-apiserver (+ kube-controller-manager),
# built from source by hack/build-control-plane.sh. No kubelet: nothing scheduled runs (see the local node).
#
#   hack/local-cluster.sh up     [--name NAME] [--no-crds] [--no-kcm] [--audit] [--node-ip IP]
#                                start (or reuse) and print `export KUBECONFIG=...`; --audit writes every
#                                request (metadata only) to logs/audit.log (the benchmarks count writes with it);
#                                --node-ip: for a real node (hack/node.sh): the apiserver listens and advertises
#                                on IP (pods reach it through the `kubernetes` Service), authorizes Node,RBAC with
#                                NodeRestriction, calls kubelets with a client certificate, and the controller
#                                manager also runs the node-lifecycle and pod-GC controllers
#   hack/local-cluster.sh down   [--name NAME]                          stop exactly the processes `up` started
#   hack/local-cluster.sh status [--name NAME]                          exit 0 when running and ready
#   hack/local-cluster.sh kubeconfig [--name NAME]                      print the kubeconfig path
#
# State (certificates, etcd data, logs, PIDs, kubeconfig) lives under
# ${KEYSTONE_OPERATOR_CACHE:-~/.cache/keystone-operator}/clusters/NAME (default NAME: dev).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
CACHE=${KEYSTONE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator}

cmd=${1:-}; shift || true
name=dev; crds=1; kcm=1; audit=0; node_ip=
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --no-crds) crds=0; shift ;;
    --no-kcm) kcm=0; shift ;;
    --audit) audit=1; shift ;;
    --node-ip) node_ip=$2; shift 2 ;;
    *) echo "local-cluster: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ "$name" =~ ^[a-z0-9-]+$ ]] || { echo "local-cluster: --name must match [a-z0-9-]+" >&2; exit 2; }

dir="$CACHE/clusters/$name"
log() { echo "local-cluster[$name]: $*" >&2; }

pid_alive() { [ -f "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

stop_one() {
  local p=$1 pid
  [ -f "$dir/$p.pid" ] || return 0
  pid=$(cat "$dir/$p.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/$p.pid"
}

kubectl_() { "$BIN/kubectl" --kubeconfig "$dir/kubeconfig" "$@"; }

ready() {
  [ -f "$dir/kubeconfig" ] && pid_alive etcd && pid_alive kube-apiserver || return 1
  if [ -f "$dir/kcm.enabled" ]; then pid_alive kube-controller-manager || return 1; fi
  curl -fsS --max-time 2 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
    "https://$(addr):$(cat "$dir/apiserver.port")/readyz" >/dev/null 2>&1
}

# the address the running apiserver listens on
addr() { local a; a=$(cat "$dir/node-ip" 2>/dev/null || true); echo "${a:-127.0.0.1}"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

wait_for() { # wait_for SECONDS PROCESS LOGFILE COMMAND...
  local secs=$1 what=$2 logfile=$3; shift 3
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ! pid_alive "$what"; then
      log "$what exited; last lines of $logfile:"
      tail -n 30 "$logfile" >&2 || true
      return 1
    fi
    if [ $SECONDS -ge $end ]; then
      log "$what did not become ready in ${secs}s; last lines of $logfile:"
      tail -n 30 "$logfile" >&2 || true
      return 1
    fi
    sleep 0.3
  done
}

make_pki() {
  local p="$dir/pki"
  mkdir -p "$p"
  if [ -n "$node_ip" ] && [ -f "$p/admin.crt" ] && ! grep -qx "$node_ip" "$p/serving.ips" 2>/dev/null; then
    rm -f "$p/admin.crt"  # the serving certificate must name the node address: make the set again
  fi
  [ -f "$p/admin.crt" ] && return 0
  log "creating certificates"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=keystone-operator-local-ca" \
    -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
  cat > "$p/serving.ext" <<EXT
subjectAltName=IP:127.0.0.1,IP:10.96.0.1${node_ip:+,IP:$node_ip},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
EXT
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$p/serving.key" -out "$p/serving.csr" 2>/dev/null
  openssl x509 -req -in "$p/serving.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 3650 \
    -extfile "$p/serving.ext" -out "$p/serving.crt" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' > "$p/client.ext"
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=keystone-operator-admin" \
    -keyout "$p/admin.key" -out "$p/admin.csr" 2>/dev/null
  openssl x509 -req -in "$p/admin.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 3650 \
    -extfile "$p/client.ext" -out "$p/admin.crt" 2>/dev/null
  # the apiserver's identity towards kubelets (logs, exec, port-forward)
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
    -keyout "$p/kubelet-client.key" -out "$p/kubelet-client.csr" 2>/dev/null
  openssl x509 -req -in "$p/kubelet-client.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 3650 \
    -extfile "$p/client.ext" -out "$p/kubelet-client.crt" 2>/dev/null
  echo "$node_ip" > "$p/serving.ips"
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  chmod 600 "$p"/*.key
}

write_kubeconfig() {
  cat > "$dir/kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: keystone-operator-$name
  cluster:
    server: https://${node_ip:-127.0.0.1}:$1
    certificate-authority: $dir/pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $dir/pki/admin.crt
    client-key: $dir/pki/admin.key
contexts:
- name: keystone-operator-$name
  context: {cluster: keystone-operator-$name, user: admin, namespace: default}
current-context: keystone-operator-$name
KCFG
  chmod 600 "$dir/kubeconfig"
}

start() {
  for p in kube-controller-manager kube-apiserver etcd; do stop_one "$p"; done
  rm -rf "$dir/etcd-data" "$dir/logs"
  mkdir -p "$dir/logs"
  make_pki
  local etcd_port peer_port api_port
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  echo "$api_port" > "$dir/apiserver.port"
  echo "$node_ip" > "$dir/node-ip"
  local node_args=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --authorization-mode RBAC
    --endpoint-reconciler-type none)
  if [ -n "$node_ip" ]; then
    node_args=(--bind-address "$node_ip" --advertise-address "$node_ip" --authorization-mode Node,RBAC
      --enable-admission-plugins NodeRestriction --endpoint-reconciler-type lease
      --kubelet-client-certificate "$dir/pki/kubelet-client.crt" --kubelet-client-key "$dir/pki/kubelet-client.key"
      --kubelet-certificate-authority "$dir/pki/ca.crt" --kubelet-preferred-address-types InternalIP)
  fi

  log "starting etcd on 127.0.0.1:$etcd_port"
  setsid "$BIN/etcd" --name "$name" --data-dir "$dir/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "$name=http://127.0.0.1:$peer_port" --unsafe-no-fsync --quota-backend-bytes 2147483648 \
    --log-level warn </dev/null >"$dir/logs/etcd.log" 2>&1 9>&- &
  echo $! > "$dir/etcd.pid"
  wait_for 30 etcd "$dir/logs/etcd.log" curl -fsS "http://127.0.0.1:$etcd_port/health"

  local audit_args=()
  if [ "$audit" = 1 ]; then
    # Metadata of every request, once, when the response is complete (verb, user, object, status code).
    printf 'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived, ResponseStarted]\nrules:\n  - level: Metadata\n' \
      > "$dir/audit-policy.yaml"
    audit_args=(--audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/logs/audit.log"
      --audit-log-format json --audit-log-mode blocking --audit-log-maxsize 0)
  fi
  log "starting kube-apiserver on https://${node_ip:-127.0.0.1}:$api_port"
  setsid "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    "${node_args[@]}" --secure-port "$api_port" \
    --tls-cert-file "$dir/pki/serving.crt" --tls-private-key-file "$dir/pki/serving.key" \
    --client-ca-file "$dir/pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$dir/pki/sa.pub" --service-account-signing-key-file "$dir/pki/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true --profiling=false \
    --cert-dir "$dir/pki/generated" --v 1 "${audit_args[@]}" </dev/null >"$dir/logs/kube-apiserver.log" 2>&1 9>&- &
  echo $! > "$dir/kube-apiserver.pid"
  write_kubeconfig "$api_port"
  wait_for 120 kube-apiserver "$dir/logs/kube-apiserver.log" \
    curl -fsS --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
    "https://${node_ip:-127.0.0.1}:$api_port/readyz"

  rm -f "$dir/kcm.enabled"
  if [ "$kcm" = 1 ]; then
    log "starting kube-controller-manager"
    local controllers=serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller
    controllers+=,garbage-collector-controller,namespace-controller,deployment-controller,replicaset-controller
    controllers+=,job-controller,cronjob-controller,ttl-after-finished-controller,disruption-controller
    controllers+=,endpointslice-controller,resourcequota-controller
    [ -n "$node_ip" ] && controllers+=,node-lifecycle-controller,pod-garbage-collector-controller
    setsid "$BIN/kube-controller-manager" --kubeconfig "$dir/kubeconfig" --leader-elect=false --secure-port 0 \
      --controllers "$controllers" --service-account-private-key-file "$dir/pki/sa.key" \
      --root-ca-file "$dir/pki/ca.crt" --use-service-account-credentials=false --v 1 \
      </dev/null >"$dir/logs/kube-controller-manager.log" 2>&1 9>&- &
    echo $! > "$dir/kube-controller-manager.pid"
    touch "$dir/kcm.enabled"
    # the namespace controller and the serviceaccount controller are up once `default` gets its ServiceAccount
    wait_for 60 kube-controller-manager "$dir/logs/kube-controller-manager.log" kubectl_ get serviceaccount default -n default
  fi
}

install_crds() {
  log "installing CRDs from manifests/crds/"
  kubectl_ apply --server-side --force-conflicts --field-manager keystone-operator-hack -f "$repo/manifests/crds/" >&2
  # kubectl wait fails at once ("status.conditions accessor error") if it reads a CRD before the apiserver
  # has written any status: retry for a bounded while.
  local i
  for i in $(seq 1 30); do
    kubectl_ wait --for condition=Established --timeout 60s -f "$repo/manifests/crds/" >&2 2>/dev/null && return 0
    sleep 0.2
  done
  kubectl_ wait --for condition=Established --timeout 5s -f "$repo/manifests/crds/" >&2
}

case "$cmd" in
  up)
    BIN=$("$here/build-control-plane.sh")
    mkdir -p "$dir"
    exec 9>"$dir/lock"
    flock 9
    if ready && [ "$(cat "$dir/node-ip" 2>/dev/null)" = "$node_ip" ]; then
      log "reusing the running control plane"
    else
      start
    fi
    [ "$crds" = 1 ] && install_crds
    log "ready; logs in $dir/logs"
    echo "export KUBECONFIG=$dir/kubeconfig"
    ;;
  down)
    [ -d "$dir" ] || exit 0
    exec 9>"$dir/lock"
    flock 9
    for p in kube-controller-manager kube-apiserver etcd; do stop_one "$p"; done
    log "stopped"
    ;;
  status)
    BIN=$("$here/build-control-plane.sh")
    ready
    ;;
  kubeconfig)
    echo "$dir/kubeconfig"
    ;;
  *)
    sed -n '2,12p' "$0" >&2
    exit 2
    ;;
esac
