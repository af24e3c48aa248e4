#!/usr/bin/env bash
# Generates the OLM bundle — bundle/manifests/ (ClusterServiceVersion, CRD, metrics Services),
# bundle/metadata/annotations.yaml and bundle.Dockerfile — from the chart rendered with default values,
# manifests/crds, manifests/samples and the hand-written hack/olm/ (crates/packaging/src/bundle.rs says how).
# `--check` generates into a temporary directory and fails on any difference (what CI does).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
helm=$(hack/build-helm.sh)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$helm" template keystone-operator charts/keystone-operator --namespace keystone-operator > "$tmp/chart.yaml"
cargo run --quiet --locked -p packaging --bin bundlegen -- "$tmp/chart.yaml" "$tmp/out"
if [ "${1:-}" = "--check" ]; then
  if ! diff -r bundle "$tmp/out/bundle" >/dev/null 2>&1 || ! diff -u bundle.Dockerfile "$tmp/out/bundle.Dockerfile" >/dev/null 2>&1; then
    echo "gen-bundle: bundle/ or bundle.Dockerfile is out of date; run 'make generate' and commit the result" >&2
    exit 1
  fi
  exit 0
fi
rm -rf bundle
cp -r "$tmp/out/bundle" bundle
cp "$tmp/out/bundle.Dockerfile" bundle.Dockerfile
echo "gen-bundle: wrote bundle/ and bundle.Dockerfile" >&2
