#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from the Go module proxy into a cache
# outside the checkout, keyed by versions, and reuses it when present. Prints the bin directory on stdout.
#
#   KUBE_VERSION   Kubernetes release (default: v1.37.2; matches k8s-openapi's v1_37 feature)
#   ETCD_VERSION   etcd release (default: v3.6.16)
#   KEYSTONE_OPERATOR_CACHE  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator)
#
# Why from source: this machine reaches only package registries; there is no dl.k8s.io. `go install pkg@ver`
# refuses k8s.io/kubernetes (its go.mod has replace lines), so a throwaway tools module pins every staging
# module to the published v0.Y.Z with its own replace block, derived from the proxy's copy of k8s's go.mod.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CACHE=${KEYSTONE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator}
GO_VERSION=$(go env GOVERSION)
BIN="$CACHE/control-plane/k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_${GO_VERSION}/bin"
WANT=(etcd kube-apiserver kube-controller-manager kubectl)

log() { echo "build-control-plane: $*" >&2; }

have_all() {
  local b
  for b in "${WANT[@]}"; do [ -x "$BIN/$b" ] || return 1; done
}

if have_all; then
  echo "$BIN"
  exit 0
fi

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
missing=()
for b in kube-apiserver kube-controller-manager kubectl; do [ -x "$BIN/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -gt 0 ]; then
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  staging_ver="v0.${KUBE_VERSION#v1.}"
  cd "$WORK/kube"
  if [ ! -f go.mod ] || ! grep -q "k8s.io/kubernetes ${KUBE_VERSION}" go.mod; then
    log "preparing tools module for kubernetes $KUBE_VERSION"
    gomod=$(go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
    [ -f "$gomod" ] || { log "could not download k8s.io/kubernetes@${KUBE_VERSION} from the module proxy"; exit 1; }
    rm -f go.mod go.sum
    go mod init keystone-operator.invalid/hack/kube >/dev/null 2>&1
    # every replace in k8s's own go.mod that points into ./staging/ becomes a pin to the published version
    go mod edit -json "$gomod" \
      | python3 -c 'import json,sys; [print(r["Old"]["Path"]) for r in json.load(sys.stdin).get("Replace") or [] if r["New"]["Path"].startswith("./staging/")]' \
      | while read -r mod; do go mod edit -replace "${mod}=${mod}@${staging_ver}"; done
    go mod edit -require "k8s.io/kubernetes@${KUBE_VERSION}"
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    go mod tidy >/dev/null
  fi
  build_date=2026-01-01T00:00:00Z
  ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X ${pkg}.gitVersion=${KUBE_VERSION} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
    ld+=" -X ${pkg}.gitCommit=0000000000000000000000000000000000000000 -X ${pkg}.gitTreeState=clean"
    ld+=" -X ${pkg}.buildDate=${build_date}"
  done
  for b in "${missing[@]}"; do
    log "building $b $KUBE_VERSION"
    start=$(date +%s)
    go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ld" -o "$BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b"
    mv "$BIN/$b.tmp" "$BIN/$b"
    log "$b built in $(( $(date +%s) - start ))s"
  done
fi

have_all || { log "build finished but binaries are missing in $BIN"; exit 1; }
echo "$BIN"
