#!/usr/bin/env bash
# Regenerates the CRD YAML from the Rust types into manifests/crds/ (one file per CRD) and copies it into the
# chart. `--check` regenerates into a temporary directory and fails on any difference (what CI does).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo run --quiet --locked -p keystone-types --bin crdgen -- "$tmp"
if [ "${1:-}" = "--check" ]; then
  status=0
  for dest in manifests/crds charts/keystone-operator/crds; do
    if ! diff -r "$dest" "$tmp" >/dev/null 2>&1; then
      echo "gen-crds: $dest is out of date; run 'make generate' and commit the result" >&2
      status=1
    fi
  done
  exit $status
fi
for dest in manifests/crds charts/keystone-operator/crds; do
  rm -rf "$dest"
  mkdir -p "$dest"
  cp "$tmp"/*.yaml "$dest"/
done
echo "gen-crds: wrote $(ls "$tmp" | tr '\n' ' ')into manifests/crds/ and charts/keystone-operator/crds/" >&2
