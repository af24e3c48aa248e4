#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from the Go module proxy into a cache
# outside the checkout, keyed by versions, and reuses it when present. Prints the bin directory on stdout.
#
#   KUBE_VERSION   Kubernetes release (default: v1.37.2; matches k8s-openapi's v1_37 feature)
#   ETCD_VERSION   etcd release (default: v3.6.16)
#   KEYSTONE_OPERATOR_CACHE  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator)
# How: hack/lib/kube-build.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/kube-build.sh
. "$here/lib/kube-build.sh"

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CACHE=${KEYSTONE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator}
GO_VERSION=$(go env GOVERSION)
BIN="$CACHE/control-plane/k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_${GO_VERSION}/bin"
WANT=(etcd kube-apiserver kube-controller-manager kubectl)

log() { echo "build-control-plane: $*" >&2; }

cached_or_continue "$BIN" "${WANT[@]}"

command -v go >/dev/null || { log "go is not installed (need Go >= 1.26)"; exit 1; }
mkdir -p "$CACHE"
avail_kb=$(df -Pk "$CACHE" | awk 'NR==2{print $4}')
if [ "${avail_kb:-0}" -lt $((6 * 1024 * 1024)) ]; then
  log "less than 6 GiB free under $CACHE; the Go module and build caches need about that much"
  exit 1
fi

export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
mkdir -p "$BIN"
WORK="$CACHE/control-plane/src-${KUBE_VERSION}_${ETCD_VERSION}"
mkdir -p "$WORK/kube" "$WORK/etcd"

# --- etcd: its own module, so MVS cannot lift versions under kube-apiserver --------------------------
if [ ! -x "$BIN/etcd" ]; then
  log "building etcd $ETCD_VERSION"
  start=$(date +%s)
  (
    cd "$WORK/etcd"
    [ -f go.mod ] || go mod init keystone-operator.invalid/hack/etcd >/dev/null 2>&1
    go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >/dev/null
    go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$BIN/etcd.tmp" "$BIN/etcd"
  )
  log "etcd built in $(( $(date +%s) - start ))s"
fi

# --- kubernetes ------------------------------------------------------------------------------------
kube_build "$KUBE_VERSION" "$WORK/kube" "$BIN" kube-apiserver kube-controller-manager kubectl

cached_or_continue "$BIN" "${WANT[@]}"  # prints BIN and exits when all are there
log "build finished but binaries are missing in $BIN"
exit 1
