#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy into the cache outside the checkout (like the control plane)
# and reuses it when present. Prints the path of the binary on stdout.
#
#   HELM_VERSION  helm release (default: v3.22.0)
#   KEYSTONE_OPERATOR_CACHE  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator)
#
# Why from source: this machine reaches only package registries; get.helm.sh is not one of them.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v3.22.0}
CACHE=${KEYSTONE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator}
GO_VERSION=$(go env GOVERSION)
BIN="$CACHE/helm/${HELM_VERSION}_${GO_VERSION}/bin"

log() { echo "build-helm: $*" >&2; }

if [ -x "$BIN/helm" ]; then
  echo "$BIN/helm"
  exit 0
fi
command -v go >/dev/null || { log "go is not installed (need Go >= 1.26)"; exit 1; }
mkdir -p "$BIN" "$CACHE/locks"
exec 9>"$CACHE/locks/helm.lock"
flock 9
if [ -x "$BIN/helm" ]; then echo "$BIN/helm"; exit 0; fi

log "building helm $HELM_VERSION (a few minutes the first time)"
start=$(date +%s)
major=${HELM_VERSION%%.*}
# helm's release build stamps its version and its default Kubernetes version (from the client-go it is built
# with) through ldflags; without them `helm template` assumes Kubernetes v1.20 and refuses our kubeVersion.
export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0
gomod=$(go mod download -json "helm.sh/helm/${major}@${HELM_VERSION}" 9>&- | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
client_go=$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod")   # v0.37.0 -> Kubernetes 1.37
k8s_minor=$(echo "$client_go" | cut -d. -f2)
[ -n "$k8s_minor" ] || { log "cannot read the client-go version from $gomod"; exit 1; }
ldflags="-s -w -X helm.sh/helm/${major}/internal/version.version=${HELM_VERSION}"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X helm.sh/helm/${major}/${pkg}.k8sVersionMajor=1 -X helm.sh/helm/${major}/${pkg}.k8sVersionMinor=${k8s_minor}"
done
GOBIN="$BIN.tmp" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/${major}/cmd/helm@${HELM_VERSION}" 9>&-
mv "$BIN.tmp/helm" "$BIN/helm"
rmdir "$BIN.tmp"
log "helm built in $(( $(date +%s) - start ))s"
echo "$BIN/helm"
