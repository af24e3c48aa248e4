#!/usr/bin/env bash
# Builds what the real local node runs beyond Debian's packages: kubelet, kube-proxy and kube-scheduler from
# k8s.io/kubernetes, CoreDNS (cluster DNS) and crictl (pod teardown through the CRI) from their Go modules, and
# the pause binary (static, from the Kubernetes sources). Cached outside the checkout, keyed by versions, and
# reused when present. Prints the bin directory on stdout.
#
#   KUBE_VERSION     Kubernetes release (default: v1.37.2, the control plane's)
#   COREDNS_VERSION  github.com/coredns/coredns release (default: v1.14.7)
#   CRICTL_VERSION   sigs.k8s.io/cri-tools release (default: v1.37.0)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/kube-build.sh
. "$here/lib/kube-build.sh"

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.7}
CRICTL_VERSION=${CRICTL_VERSION:-v1.37.0}
CACHE=${KEYSTONE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator}
GO_VERSION=$(go env GOVERSION)
BIN="$CACHE/node-bin/k8s-${KUBE_VERSION}_coredns-${COREDNS_VERSION}_crictl-${CRICTL_VERSION}_${GO_VERSION}/bin"
WANT=(kubelet kube-proxy kube-scheduler coredns crictl pause)

log() { echo "build-node: $*" >&2; }

cached_or_continue "$BIN" "${WANT[@]}"
command -v go >/dev/null || { log "go is not installed (need Go >= 1.26)"; exit 1; }
command -v gcc >/dev/null || { log "gcc is needed for the static pause binary"; exit 1; }
mkdir -p "$BIN"
kube_build "$KUBE_VERSION" "$CACHE/node-bin/src-${KUBE_VERSION}" "$BIN" kubelet kube-proxy kube-scheduler
go_build_module "github.com/coredns/coredns@${COREDNS_VERSION}" github.com/coredns/coredns "$BIN" coredns
go_build_module "sigs.k8s.io/cri-tools@${CRICTL_VERSION}" sigs.k8s.io/cri-tools/cmd/crictl "$BIN" crictl
if [ ! -x "$BIN/pause" ]; then
  # the pod sandbox's process: Kubernetes' own pause.c, static, so the pause image is one file
  src=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  gcc -Os -static -o "$BIN/pause.tmp" -DVERSION="${KUBE_VERSION}" "$src/build/pause/linux/pause.c"
  strip "$BIN/pause.tmp"
  mv "$BIN/pause.tmp" "$BIN/pause"
fi
cached_or_continue "$BIN" "${WANT[@]}"  # prints BIN and exits when all are there
log "build finished but binaries are missing in $BIN"
exit 1
