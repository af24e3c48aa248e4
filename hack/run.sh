#!/usr/bin/env bash
# `make run` as root runs hack/run-node.sh (the real node, the operator installed by Helm). This is
# `make run-dev` (and `make run` without root): build the controllers, start the local control plane (the default) or use the current
# kubeconfig (CLUSTER=current), install the CRDs, run the three controllers in the foreground and, on the
# local control plane only, start the local node (as root: MariaDB, memcached and the node agent that runs the
# pods with Debian's Keystone), apply the sample KeystoneAPI, wait until it is Ready and print the command that
# issues a token. Ctrl-C stops the controllers; the control plane and the node keep running
# (`make cluster-down` and `make node-down` stop them).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
CLUSTER=${CLUSTER:-local}
NAMESPACE=${NAMESPACE:-openstack}
if [ "${RUN_MODE:-node}" = node ] && [ "$CLUSTER" = local ] && [ "$(id -u)" = 0 ]; then
  exec hack/run-node.sh
fi

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
  node=0
  if [ "$(id -u)" = 0 ]; then
    hack/local-node.sh up --name dev --namespace "$NAMESPACE"
    node=1
  else
    echo "run: not root, so no node: the KeystoneAPI is accepted and configured, but its pods never run (a node" \
      "needs root for its interfaces, iptables rules, cgroups and mounts: sudo make run starts the real one)" >&2
  fi
  start=$SECONDS
  "${kubectl[@]}" create namespace "$NAMESPACE" --dry-run=client -o yaml | "${kubectl[@]}" apply -f - >/dev/null
  "${kubectl[@]}" -n "$NAMESPACE" apply -f manifests/samples/osp-secret.yaml -f manifests/samples/keystoneapi.yaml
  if [ "$node" = 1 ]; then
    echo "run: waiting for the sample KeystoneAPI to become Ready (db-create, db-sync, bootstrap, API pod)"
    "${kubectl[@]}" -n "$NAMESPACE" wait keystoneapi/keystone --for=condition=Ready --timeout=10m
    echo "run: Ready in $((SECONDS - start))s"
    ip=$("${kubectl[@]}" -n "$NAMESPACE" get endpointslice -l kubernetes.io/service-name=keystone-public \
      -o jsonpath='{.items[0].endpoints[0].addresses[0]}')
    cat <<MSG

run: Keystone answers at http://$ip:5000/v3 (the keystone-public Service's ready endpoint on the node bridge).
Issue a token (the admin password is the sample osp-secret's AdminPassword):
  env -i PATH=/usr/bin:/bin openstack --os-auth-url http://$ip:5000/v3 --os-identity-api-version 3 \\
    --os-username admin --os-password "\$(${kubectl[*]} -n $NAMESPACE get secret osp-secret -o jsonpath='{.data.AdminPassword}' | base64 -d)" \\
    --os-project-name admin --os-user-domain-name Default --os-project-domain-name Default token issue
MSG
  fi
  cat <<MSG

In another terminal (kubectl is ${kubectl[*]}):
  export KUBECONFIG=$KUBECONFIG
  kubectl -n $NAMESPACE get keystoneapi,pods,jobs
  kubectl -n $NAMESPACE get keystoneapi keystone -o yaml
  kubectl explain keystoneapi.spec
Container logs: ~/.cache/keystone-operator/node/dev/logs/<namespace>_<pod>_<uid>/<container>.log
Ctrl-C stops the controllers; 'make node-down' and 'make cluster-down' stop the node and the control plane.
MSG
fi
wait
