#!/usr/bin/env bash
# `make bench`: the benchmarks (e2e/bench, see BENCHMARKS.md) on a fresh local control plane `bench` with the
# apiserver's audit log on, against release builds of the three controllers. Arguments go to keystone-bench
# (`make bench ARGS="--runs 5 --idle 60s"`); the report lands in target/bench/. Stops the control plane at the
# end unless KEEP_CLUSTER=1.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
CACHE=${KEYSTONE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator}
t0=$SECONDS
hack/build-control-plane.sh >/dev/null
hack/build-helm.sh >/dev/null
cargo build --release --locked -p keystone-api-controller -p keystone-fernet-controller -p keystone-db-controller -p keystone-bench
# A fresh control plane, so that the audit log holds only this run.
hack/local-cluster.sh down --name bench >/dev/null 2>&1 || true
rm -rf "$CACHE/clusters/bench"
cleanup() {
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then hack/local-cluster.sh down --name bench || true; fi
}
trap cleanup EXIT
target/release/keystone-bench "$@"
echo "bench: done in $((SECONDS - t0))s; report in target/bench/report.md" >&2
