# Sourced by hack/build-control-plane.sh and hack/build-node.sh: build commands of k8s.io/kubernetes from the
# Go module proxy.
#
# Why from source: this machine reaches only package registries; there is no dl.k8s.io. `go install pkg@ver`
# refuses k8s.io/kubernetes (its go.mod has replace lines), so a throwaway tools module pins every staging
# module to the published v0.Y.Z with its own replace block, derived from the proxy's copy of k8s's go.mod.

# cached_or_continue BINDIR NAME...: when every NAME is in BINDIR, print BINDIR and exit (the cache is warm)
cached_or_continue() {
  local bin=$1 b; shift
  for b in "$@"; do [ -x "$bin/$b" ] || return 0; done
  echo "$bin"
  exit 0
}

# kube_build KUBE_VERSION WORKDIR BINDIR CMD... — builds k8s.io/kubernetes/cmd/CMD into BINDIR for each CMD
# that is missing there (CGO_ENABLED=0, version stamped). WORKDIR holds the tools module.
kube_build() {
  local version=$1 work=$2 bin=$3; shift 3
  local missing=() b
  for b in "$@"; do [ -x "$bin/$b" ] || missing+=("$b"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
  local minor=${version#v1.}; minor=${minor%%.*}
  local staging_ver="v0.${version#v1.}"
  local want="k8s.io/kubernetes ${version}: $*"
  mkdir -p "$work" "$bin"
  (
    cd "$work"
    if [ ! -f go.mod ] || [ "$(cat .tools 2>/dev/null)" != "$want" ]; then
      log "preparing tools module for kubernetes $version ($*)"
      local gomod
      gomod=$(go mod download -json "k8s.io/kubernetes@${version}" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
      [ -f "$gomod" ] || { log "could not download k8s.io/kubernetes@${version} from the module proxy"; exit 1; }
      rm -f go.mod go.sum .tools
      go mod init keystone-operator.invalid/hack/kube >/dev/null 2>&1
      # every replace in k8s's own go.mod that points into ./staging/ becomes a pin to the published version
      go mod edit -json "$gomod" \
        | python3 -c 'import json,sys; [print(r["Old"]["Path"]) for r in json.load(sys.stdin).get("Replace") or [] if r["New"]["Path"].startswith("./staging/")]' \
        | while read -r mod; do go mod edit -replace "${mod}=${mod}@${staging_ver}"; done
      go mod edit -require "k8s.io/kubernetes@${version}"
      { printf '//go:build tools\n\npackage tools\n\nimport (\n'
        for b in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$b"; done
        printf ')\n'; } > tools.go
      go mod tidy >/dev/null
      echo "$want" > .tools
    fi
    local build_date=2026-01-01T00:00:00Z ld="-s -w" pkg start
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X ${pkg}.gitVersion=${version} -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
      ld+=" -X ${pkg}.gitCommit=0000000000000000000000000000000000000000 -X ${pkg}.gitTreeState=clean"
      ld+=" -X ${pkg}.buildDate=${build_date}"
    done
    for b in "${missing[@]}"; do
      log "building $b $version"
      start=$(date +%s)
      go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ld" -o "$bin/$b.tmp" "k8s.io/kubernetes/cmd/$b"
      mv "$bin/$b.tmp" "$bin/$b"
      log "$b built in $(( $(date +%s) - start ))s"
    done
  )
}

# go_build_module MODULE@VERSION PACKAGE BINDIR NAME — a Go command from a module without replace lines.
go_build_module() {
  local modver=$1 pkg=$2 bin=$3 name=$4
  [ -x "$bin/$name" ] && return 0
  export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
  mkdir -p "$bin"
  log "building $name ($modver)"
  local start; start=$(date +%s)
  GOBIN="$bin" go install -trimpath -ldflags "-s -w" "${pkg}@${modver#*@}"
  [ "$(basename "$pkg")" = "$name" ] || mv "$bin/$(basename "$pkg")" "$bin/$name"
  log "$name built in $(( $(date +%s) - start ))s"
}
