#!/usr/bin/env bash
# Builds hack/olm-validate (the OLM bundle validators of github.com/operator-framework/api, offline) into the
# cache outside the checkout and reuses it when present. Prints the path of the binary on stdout.
#
#   KEYSTONE_OPERATOR_CACHE  cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator)
#
# Why not operator-sdk or opm: both pull in helm, kubectl, containerd and docker/cli; the validators they run
# for `bundle validate --select-optional suite=operatorframework` live in operator-framework/api, which builds
# in about 2 minutes from the Go module proxy (53 MB) and runs without network.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/olm-validate"

CACHE=${KEYSTONE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator}
API_VERSION=$(awk '$1 == "require" && $2 == "github.com/operator-framework/api" {print $3}' go.mod)
GO_VERSION=$(go env GOVERSION)
SOURCE_HASH=$(cat go.mod go.sum main.go | sha256sum | cut -c1-12)
BIN="$CACHE/olm-validate/${API_VERSION}_${GO_VERSION}_${SOURCE_HASH}/bin"

log() { echo "build-olm-validator: $*" >&2; }

if [ -x "$BIN/olm-validate" ]; then
  echo "$BIN/olm-validate"
  exit 0
fi
command -v go >/dev/null || { log "go is not installed (need Go >= 1.26)"; exit 1; }
mkdir -p "$BIN" "$CACHE/locks"
exec 9>"$CACHE/locks/olm-validate.lock"
flock 9
if [ -x "$BIN/olm-validate" ]; then echo "$BIN/olm-validate"; exit 0; fi

log "building olm-validate with operator-framework/api $API_VERSION (about 2 minutes the first time)"
start=$(date +%s)
export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0
go build -mod=readonly -trimpath -ldflags "-s -w" -o "$BIN/olm-validate.tmp" . 9>&-
mv "$BIN/olm-validate.tmp" "$BIN/olm-validate"
log "built in $(( $(date +%s) - start ))s"
echo "$BIN/olm-validate"
