#!/usr/bin/env bash
# `make test-node`: the real node tier. Starts the real node `node` (hack/node.sh: kubelet, containerd, CoreDNS,
# kube-proxy on its own control plane), builds the images here (hack/images.sh) and loads them, then runs
# e2e/suite/tests/node.rs: the operator installed by Helm as pods under the restricted profile, the sample
# KeystoneAPI Ready with the local Keystone image, a token from a client pod through the Service's DNS name,
# validated on both replicas, `kubectl logs` of the db-sync Job. Needs root. Stops the node (and undoes its
# host changes) at the end unless KEEP_CLUSTER=1.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
if [ "$(id -u)" != 0 ]; then
  echo "test-node: must run as root (the node creates interfaces, iptables rules, cgroups and mounts)" >&2
  exit 1
fi
t0=$SECONDS
stage() { echo "test-node: $1 in $((SECONDS - ${2}))s" >&2; }
s=$SECONDS; hack/install-test-deps.sh --node; stage "Debian packages" $s
s=$SECONDS; hack/build-node.sh >/dev/null; stage "node binaries" $s
s=$SECONDS; images=$(hack/images.sh all); mapfile -t tars <<<"$images"; stage "images" $s
cleanup() {
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then hack/node.sh down --name node || true; fi
}
trap cleanup EXIT
s=$SECONDS; eval "$(hack/node.sh up --name node)"; stage "node up" $s
s=$SECONDS; hack/node.sh load --name node "${tars[@]}"; stage "image load" $s
export KUBECONFIG
HELM=$(hack/build-helm.sh)
export HELM
PATH="$(dirname "$(hack/build-control-plane.sh)")/bin:$PATH"
export PATH
cargo test --locked -p keystone-e2e --features node --test node -- --nocapture
echo "test-node: done in $((SECONDS - t0))s"
