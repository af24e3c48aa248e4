#!/usr/bin/env bash
# `make test`: formatting, lints, generated files, then unit and integration tests against a real control
# plane (etcd + kube-apiserver + kube-controller-manager, built from source on first use and cached).
# The control planes this run starts are stopped at the end unless KEEP_CLUSTER=1.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

stage() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
t0=$SECONDS

stage "cargo fmt --check"
cargo fmt --all -- --check

stage "cargo clippy -D warnings"
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings

stage "helm, hadolint and the OLM bundle validator (built or fetched once, cached)"
t=$SECONDS
hack/build-helm.sh >/dev/null
hack/install-hadolint.sh >/dev/null
hack/build-olm-validator.sh >/dev/null
echo "tools ready in $((SECONDS - t))s"

stage "generated files"
hack/gen-crds.sh --check
hack/gen-manifests.sh --check
hack/gen-bundle.sh --check

stage "test dependencies (Debian: mariadb-server, python3-pymysql)"
hack/install-test-deps.sh

stage "control plane binaries"
t=$SECONDS
hack/build-control-plane.sh >/dev/null
echo "control plane binaries ready in $((SECONDS - t))s"

cleanup() {
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    for c in test bare openshift; do hack/local-cluster.sh down --name "$c" || true; done
  fi
}
trap cleanup EXIT

stage "local control plane"
t=$SECONDS
hack/local-cluster.sh up --name test >/dev/null
echo "control plane up in $((SECONDS - t))s"

stage "cargo test"
t=$SECONDS
log=$(mktemp)
cargo test --locked --workspace --all-targets 2>&1 | tee "$log"
read -r passed failed < <(awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } } END { print p + 0, f + 0 }' "$log")
rm -f "$log"
echo "tests done in $((SECONDS - t))s"

stage "done in $((SECONDS - t0))s"
echo "tests: ${passed} passed, ${failed} failed"
