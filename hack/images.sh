#!/usr/bin/env bash
# Images for the real node (hack/node.sh), built here from Debian packages and PyPI — nothing is pulled from a
# registry. Each image is cached as a docker-archive under ${KEYSTONE_OPERATOR_CACHE:-~/.cache/keystone-operator}/
# images, keyed by a hash of its inputs, and rebuilt only when they change. Prints the archive path(s).
#
#   hack/images.sh pause        the pod sandbox image (Kubernetes' pause.c, static)
#   hack/images.sh debian       Debian bookworm (debootstrap --variant=minbase): the base of the images below
#   hack/images.sh distroless   gcr.io/distroless/cc-debian12:nonroot, made from Debian's libc6, libgcc-s1,
#                               libssl3, tzdata and the CA bundle (the base the Dockerfiles name)
#   hack/images.sh keystone|mariadb|memcached|client   hack/images/NAME/Containerfile, built with buildah
#   hack/images.sh operator     the three controllers: `make release` binaries on the distroless base (the fast
#                               path), or with OPERATOR_IMAGES=dockerfiles the images the Dockerfiles build
#   hack/images.sh rust         docker.io/library/rust:1.95-bookworm (the Dockerfiles' build stage): the debian base,
#                               gcc, and this machine's toolchain of rust-toolchain.toml's channel
#   hack/images.sh dockerfiles  Dockerfile.api, Dockerfile.fernet, Dockerfile.db built as they are (buildah), under
#                               the controllers' references; the cargo build runs in the container (crates.io)
#   hack/images.sh ref NAME     the image reference of NAME (no build)
#   hack/images.sh all          everything above
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
CACHE=${KEYSTONE_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keystone-operator}
out="$CACHE/images"
KOLLA_VERSION=${KOLLA_VERSION:-23.0.0}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TAG=${IMAGE_TAG:-dev}
log() { echo "images: $*" >&2; }

ref() {
  case "$1" in
    pause) echo "localhost/keystone-operator/pause:3.10" ;;
    debian) echo "localhost/keystone-operator/debian:bookworm" ;;
    distroless) echo "gcr.io/distroless/cc-debian12:nonroot" ;;
    rust) echo "docker.io/library/rust:1.95-bookworm" ;;
    keystone) echo "localhost/keystone-operator/openstack-keystone:$TAG" ;;
    mariadb|memcached|client) echo "localhost/keystone-operator/$1:$TAG" ;;
    keystone-*-controller) echo "localhost/keystone-operator/$1:$TAG" ;;
    *) log "unknown image $1"; exit 2 ;;
  esac
}

key() { # a short hash of the given strings and files
  local x
  for x in "$@"; do
    if [ -f "$x" ]; then sha256sum "$x"; elif [ -d "$x" ]; then (cd "$x" && find . -type f -printf '%m %p\n' | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum); else echo "$x"; fi
  done | sha256sum | cut -c1-16
}

buildah_() {
  # TMPDIR: buildah keeps RUN --mount=type=cache directories under it (else /var/tmp/buildah-cache)
  TMPDIR="$out/tmp" buildah --root "$out/buildah/root" --runroot "$out/buildah/run" --storage-driver overlay "$@"
}

# prune NAME KEEP: archives of NAME other than KEEP (older inputs) are removed
prune() {
  local f
  for f in "$out/$1"-????????????????.tar; do
    [ -f "$f" ] && [ "$f" != "$2" ] && rm -f "$f"
  done
  true
}

need_root() {
  [ "$(id -u)" = 0 ] || { log "building images needs root (buildah, debootstrap)"; exit 1; }
}

# into_buildah NAME TAR: make the archive's image available to buildah under its reference
into_buildah() {
  local r; r=$(ref "$1")
  if ! buildah_ inspect --type image "$r" >/dev/null 2>&1 \
     || [ "$(cat "$out/buildah/$1.loaded" 2>/dev/null)" != "$2" ]; then
    buildah_ pull --quiet "docker-archive:$2" >/dev/null
    echo "$2" > "$out/buildah/$1.loaded"
  fi
}

pause() {
  local bin k tar
  bin=$("$here/build-node.sh")
  k=$(key "$bin/pause")
  tar="$out/pause-$k.tar"
  if [ ! -f "$tar" ]; then
    local root="$out/work/pause"
    rm -rf "$root"; mkdir -p "$root"
    install -m 0755 "$bin/pause" "$root/pause"
    python3 "$here/lib/pack-image.py" "$root" "$(ref pause)" "$tar" --entrypoint '["/pause"]' --user 65535:65535
    rm -rf "$root"
  fi
  echo "$tar"
}

debian() {
  need_root
  local k tar
  k=$(key bookworm minbase "$DEBIAN_MIRROR" v1)  # bump v1 when the recipe below changes
  tar="$out/debian-$k.tar"
  if [ ! -f "$tar" ]; then
    command -v debootstrap >/dev/null || { log "debootstrap is missing: hack/install-test-deps.sh --node"; exit 1; }
    local root="$out/work/debian" start=$SECONDS
    rm -rf "$root"; mkdir -p "$root"
    log "debootstrap bookworm (minbase) from $DEBIAN_MIRROR"
    debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >"$out/work/debootstrap.log" 2>&1 \
      || { tail -20 "$out/work/debootstrap.log" >&2; exit 1; }
    cat > "$root/etc/apt/sources.list" <<SRC
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc "$root"/usr/share/man
    python3 "$here/lib/pack-image.py" "$root" "$(ref debian)" "$tar" --cmd '["/bin/bash"]'
    rm -rf "$root"
    log "debian built in $((SECONDS - start))s"
  fi
  echo "$tar"
}

distroless() {
  local k tar pkgs=(libc6 libgcc-s1 libssl3 tzdata)
  k=$(key "${pkgs[@]}" v1 /etc/ssl/certs/ca-certificates.crt)
  tar="$out/distroless-$k.tar"
  if [ ! -f "$tar" ]; then
    local work="$out/work/distroless" root
    root="$work/root"
    rm -rf "$work"; mkdir -p "$root" "$work/debs"
    (cd "$work/debs" && { apt-get download -qq "${pkgs[@]}" >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get download -qq "${pkgs[@]}" >/dev/null; }; })
    for d in "$work"/debs/*.deb; do dpkg-deb -x "$d" "$root"; done
    rm -rf "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/lintian "$root"/usr/share/locale
    mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot"
    chmod 1777 "$root/tmp"
    chown 65532:65532 "$root/home/nonroot"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$root/etc/group"
    python3 "$here/lib/pack-image.py" "$root" "$(ref distroless)" "$tar" --user 65532:65532 \
      --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
    rm -rf "$work"
  fi
  echo "$tar"
}

kolla_files() { # kolla's start.sh, set_configs.py, sudoers… from its PyPI wheel into DIR
  local dir=$1 whl
  mkdir -p "$out/pypi"
  whl=$(ls "$out"/pypi/kolla-"$KOLLA_VERSION"-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$whl" ]; then
    python3 -m pip download -q --no-deps --dest "$out/pypi" "kolla==$KOLLA_VERSION" >&2
    whl=$(ls "$out"/pypi/kolla-"$KOLLA_VERSION"-*.whl | head -1)
  fi
  mkdir -p "$dir"
  python3 - "$whl" "$dir" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for f in ("set_configs.py", "start.sh", "sudoers", "copy_cacerts.sh", "install_projects.sh"):
    open(f"{sys.argv[2]}/{f}", "wb").write(z.read(f"kolla/docker/base/{f}"))
PY
}

containerfile() { # containerfile NAME: hack/images/NAME/Containerfile on the debian base
  need_root
  local name=$1 ctx="$here/images/$1" k tar base
  base=$(debian)
  k=$(key "$ctx" "$base" "$KOLLA_VERSION" "$([ "$name" = rust ] && "$(rust_toolchain)/bin/rustc" -V)" \
    "$([ "$name" = rust ] && sha256sum /etc/ssl/certs/ca-certificates.crt)")
  tar="$out/$name-$k.tar"
  if [ ! -f "$tar" ]; then
    local start=$SECONDS work="$out/work/$name"
    rm -rf "$work"; mkdir -p "$work"; cp -a "$ctx/." "$work/"
    [ "$name" = keystone ] && kolla_files "$work/kolla"
    if [ "$name" = rust ]; then
      mkdir -p "$work/toolchain" && cp -a "$(rust_toolchain)/." "$work/toolchain/"
      cp /etc/ssl/certs/ca-certificates.crt "$work/"
    fi
    into_buildah debian "$base"
    log "building $(ref "$name")"
    buildah_ bud --quiet --pull=never --network host --layers -f "$work/Containerfile" -t "$(ref "$name")" "$work" \
      >"$out/work/$name.log" 2>&1 || { tail -30 "$out/work/$name.log" >&2; exit 1; }
    rm -f "$tar.tmp"
    buildah_ push --quiet "$(ref "$name")" "docker-archive:$tar.tmp:$(ref "$name")" >/dev/null
    mv "$tar.tmp" "$tar"
    # buildah's storage holds what the archive holds: into_buildah need not pull it back (1.6 GiB for rust)
    echo "$tar" > "$out/buildah/$name.loaded"
    rm -rf "$work"
    prune "$name" "$tar"
    log "$name built in $((SECONDS - start))s"
  fi
  echo "$tar"
}

rust_toolchain() { # the host toolchain directory of rust-toolchain.toml's channel
  local channel
  channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$repo/rust-toolchain.toml")
  readlink -f "${RUSTUP_HOME:-$HOME/.rustup}/toolchains/$channel-x86_64-unknown-linux-gnu"
}

dockerfiles() { # the three Dockerfiles as they are; both bases come from here, nothing is pulled
  need_root
  local c tars=() start=$SECONDS
  into_buildah rust "$(containerfile rust)"
  into_buildah distroless "$(distroless)"
  for c in api fernet db; do
    local r tar="$out/dockerfile-$c.tar"
    r=$(ref "keystone-$c-controller")
    log "building Dockerfile.$c"
    buildah_ bud --quiet --pull=never --network host --layers -f "$repo/Dockerfile.$c" -t "$r" "$repo" \
      >"$out/work/dockerfile-$c.log" 2>&1 || { tail -30 "$out/work/dockerfile-$c.log" >&2; exit 1; }
    rm -f "$tar"
    buildah_ push --quiet "$r" "docker-archive:$tar:$r" >/dev/null
    tars+=("$tar")
  done
  log "Dockerfiles built in $((SECONDS - start))s"
  printf '%s\n' "${tars[@]}"
}

operator() { # the fast path: host release binaries (same glibc as bookworm) on the distroless base
  need_root
  if [ "${OPERATOR_IMAGES:-}" = dockerfiles ]; then dockerfiles; return; fi
  local base c tars=()
  base=$(distroless)
  (cd "$repo" && cargo build --release --locked -q -p keystone-api-controller -p keystone-fernet-controller \
    -p keystone-db-controller >&2)
  for c in api fernet db; do
    local b="$repo/target/release/keystone-$c-controller" k tar
    k=$(key "$b" "$base")
    tar="$out/keystone-$c-controller-$k.tar"
    if [ ! -f "$tar" ]; then
      local root="$out/work/op-$c"
      rm -rf "$root"
      python3 - "$base" "$root" <<'PY'
import json, sys, tarfile
# unpack the base's single layer (pack-image.py made it)
with tarfile.open(sys.argv[1]) as t:
    m = json.load(t.extractfile("manifest.json"))[0]
    layer = t.extractfile(m["Layers"][0])
    with tarfile.open(fileobj=layer) as l:
        l.extractall(sys.argv[2], filter="tar")
PY
      install -D -m 0755 "$b" "$root/usr/local/bin/keystone-$c-controller"
      python3 "$here/lib/pack-image.py" "$root" "$(ref "keystone-$c-controller")" "$tar" --user 65532:65532 \
        --entrypoint "[\"/usr/local/bin/keystone-$c-controller\"]" --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
      rm -rf "$root"
      prune "keystone-$c-controller" "$tar"
    fi
    tars+=("$tar")
  done
  printf '%s\n' "${tars[@]}"
}

mkdir -p "$out/work" "$out/buildah" "$out/tmp"
case "${1:-}" in
  ref) ref "$2" ;;
  pause) pause ;;
  debian) debian ;;
  distroless) distroless ;;
  keystone|mariadb|memcached|client|rust) containerfile "$1" ;;
  dockerfiles) dockerfiles ;;
  operator) operator ;;
  all) pause; distroless; for i in keystone mariadb memcached client; do containerfile "$i"; done; operator ;;
  *) sed -n '2,16p' "$0" >&2; exit 2 ;;
esac
