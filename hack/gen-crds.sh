#!/usr/bin/env bash
# Regenerates the CRD YAML from the Rust types into manifests/crds/ and copies it into the chart.
# `--check` regenerates into a temporary directory and fails on any difference (what CI does).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
file=keystone.openstack.org_keystoneapis.yaml
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cargo run --quiet --locked -p keystone-types --bin crdgen > "$tmp"
if [ "${1:-}" = "--check" ]; then
  status=0
  for dest in manifests/crds charts/keystone-operator/crds; do
    if ! diff -u "$dest/$file" "$tmp" >/dev/null 2>&1; then
      echo "gen-crds: $dest/$file is out of date; run 'make generate' and commit the result" >&2
      status=1
    fi
  done
  exit $status
fi
for dest in manifests/crds charts/keystone-operator/crds; do
  mkdir -p "$dest"
  cp "$tmp" "$dest/$file"
done
echo "gen-crds: wrote manifests/crds/$file and charts/keystone-operator/crds/$file" >&2
