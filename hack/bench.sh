#!/usr/bin/env bash
# `make bench`: the benchmarks (e2e/bench, see BENCHMARKS.md) against release builds of the three controllers,
# each phase on its own fresh local control plane (bench, bench-scale, bench-unrelated, bench-rotation,
# bench-failover; keystone-bench starts them). Arguments go to keystone-bench
# (`make bench ARGS="--phases converge --runs 5 --idle 60s"`); the report lands in target/bench/. Stops the
# control planes at the end unless KEEP_CLUSTER=1.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
t0=$SECONDS
hack/build-control-plane.sh >/dev/null
hack/build-helm.sh >/dev/null
cargo build --release --locked -p keystone-api-controller -p keystone-fernet-controller -p keystone-db-controller -p keystone-bench
cleanup() {
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    for c in bench bench-scale bench-unrelated bench-rotation bench-failover; do
      hack/local-cluster.sh down --name "$c" >/dev/null 2>&1 || true
    done
  fi
}
trap cleanup EXIT
target/release/keystone-bench "$@"
echo "bench: done in $((SECONDS - t0))s; report in target/bench/report.md" >&2
