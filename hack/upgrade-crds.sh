#!/usr/bin/env bash
# Helm installs the CRDs in charts/keystone-operator/crds/ on `helm install` but never upgrades them. Run this
# after `helm upgrade` (or before, when the new version adds fields the controllers will write) to apply the
# CRDs of this checkout to the current kubectl context, then wait until they are Established.
#   hack/upgrade-crds.sh [--dry-run]
# The KeystoneAPI CRD only grows compatibly within v1beta1 (new optional fields); existing objects stay valid.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kubectl=${KUBECTL:-kubectl}
dry=()
[ "${1:-}" = "--dry-run" ] && dry=(--dry-run=server)
"$kubectl" apply --server-side --force-conflicts --field-manager=keystone-operator-crds "${dry[@]}" \
  -f "$repo/charts/keystone-operator/crds/"
if [ ${#dry[@]} -eq 0 ]; then
  # `kubectl wait` fails at once if it reads a CRD before any status is written: retry for a bounded while.
  for _ in $(seq 1 30); do
    "$kubectl" wait --for=condition=Established --timeout=60s -f "$repo/charts/keystone-operator/crds/" 2>/dev/null \
      && exit 0
    sleep 0.2
  done
  "$kubectl" wait --for=condition=Established --timeout=5s -f "$repo/charts/keystone-operator/crds/"
fi
