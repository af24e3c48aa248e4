#!/usr/bin/env bash
# `make e2e`: the end-to-end scenarios (e2e/suite) — a real Keystone on the local node, run from what the three
# controllers create. Needs root (the node uses network and mount namespaces). Starts the control plane `e2e`
# and the node `e2e`, and stops both at the end unless KEEP_CLUSTER=1.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
if [ "$(id -u)" != 0 ]; then
  echo "e2e: must run as root (the local node creates network and mount namespaces)" >&2
  exit 1
fi
t0=$SECONDS
hack/install-test-deps.sh
hack/build-control-plane.sh >/dev/null
cargo build --locked --bins
cleanup() {
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    KUBECONFIG=$(hack/local-cluster.sh kubeconfig --name e2e 2>/dev/null || true) hack/local-node.sh down --name e2e || true
    hack/local-cluster.sh down --name e2e || true
  fi
}
trap cleanup EXIT
cargo test --locked -p keystone-e2e --features e2e -- --nocapture --test-threads=1
echo "e2e: done in $((SECONDS - t0))s"
