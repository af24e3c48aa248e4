#!/usr/bin/env bash
# `make run`: build the controllers, start the local control plane (the default) or use the current
# kubeconfig (CLUSTER=current), install the CRDs, run the three controllers in the foreground and, on the
# local control plane only, apply the sample KeystoneAPI. Ctrl-C stops the controllers; the control plane keeps
# running (hack/local-cluster.sh down stops it).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
CLUSTER=${CLUSTER:-local}
NAMESPACE=${NAMESPACE:-openstack}

cargo build --locked --bins
bin=$(dirname "$(hack/build-control-plane.sh)")/bin

case "$CLUSTER" in
  local)
    eval "$(hack/local-cluster.sh up --name dev)"
    kubectl=("$bin/kubectl")
    ;;
  current)
    kubectl=(kubectl)
    command -v kubectl >/dev/null || kubectl=("$bin/kubectl")
    echo "run: using the current kubeconfig context: $("${kubectl[@]}" config current-context)"
    "${kubectl[@]}" apply --server-side -f manifests/crds/
    "${kubectl[@]}" wait --for condition=Established --timeout 60s -f manifests/crds/
    ;;
  *) echo "run: CLUSTER must be 'local' (default) or 'current'" >&2; exit 2 ;;
esac

pids=()
stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait || true
}
trap stop INT TERM EXIT

port=${METRICS_BASE_PORT:-18080}
for c in api fernet db; do
  port=$((port + 1))
  ( "target/debug/keystone-$c-controller" --log-format compact --metrics-addr "127.0.0.1:$port" 2>&1 \
      | sed -u "s/^/[$c] /" ) &
  pids+=($!)
  echo "run: keystone-$c-controller metrics on http://127.0.0.1:$port/metrics"
done

if [ "$CLUSTER" = local ]; then
  "${kubectl[@]}" create namespace "$NAMESPACE" --dry-run=client -o yaml | "${kubectl[@]}" apply -f - >/dev/null
  "${kubectl[@]}" -n "$NAMESPACE" apply -f manifests/samples/osp-secret.yaml -f manifests/samples/keystoneapi.yaml
  cat <<MSG

run: the sample KeystoneAPI is applied in namespace $NAMESPACE. In another terminal:
  export KUBECONFIG=$KUBECONFIG
  kubectl -n $NAMESPACE get keystoneapi -w
  kubectl -n $NAMESPACE get keystoneapi keystone -o yaml
  kubectl explain keystoneapi.spec
Ctrl-C stops the controllers; 'hack/local-cluster.sh down' stops the control plane.
MSG
fi
wait
