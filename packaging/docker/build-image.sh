#!/usr/bin/env bash
# Builds the container image storcon:local FROM scratch, with nothing pulled from a registry:
#   1. cargo builds `storcon` and `pageserver-sim` (debug unless --release), under the shared
#      cargo lock; with --bin-dir DIR it takes both binaries from DIR and runs no cargo (the
#      packaging tests, which run inside cargo, use it);
#   2. a staging directory gets the root filesystem: both binaries (debug info stripped), every
#      shared library `ldd` lists for them and the dynamic loader, at the paths the binaries ask
#      for; /etc/passwd and /etc/group with the unprivileged user storcon (10001), nsswitch.conf
#      (hosts from /etc/hosts, then DNS), the host's CA bundle (for HTTPS to pageservers or the
#      compute hook), /tmp;
#   3. the data directories (/var/lib/storcon, /var/lib/pageserver-sim, /var/lib/pageserver-remote)
#      are staged apart, mode 0700, so the Dockerfile copies them owned by the user;
#   4. `docker build` with packaging/docker/Dockerfile (the classic builder: this Docker has no
#      buildx), tagged storcon:local (or $STORCON_IMAGE).
# Usage: packaging/docker/build-image.sh [--release | --bin-dir DIR]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
image="${STORCON_IMAGE:-storcon:local}"
usage() { echo "usage: $0 [--release | --bin-dir DIR]" >&2; exit 2; }
bin_dir=""
case "${1:-}" in
  --release) (( $# == 1 )) || usage; bin_dir="$repo/target/release"; cargo_flags=(--release) ;;
  --bin-dir) (( $# == 2 )) || usage; bin_dir="$(cd "$2" && pwd)" ;;
  "") bin_dir="$repo/target/debug"; cargo_flags=() ;;
  *) usage ;;
esac

if [[ "${1:-}" != --bin-dir ]]; then
  (cd "$repo" && flock /tmp/cargo.lock cargo build "${cargo_flags[@]}" -p storcon -p pageserver-sim)
fi
bins=("$bin_dir/storcon" "$bin_dir/pageserver-sim")
for bin in "${bins[@]}"; do
  [[ -x "$bin" ]] || { echo "$bin is missing: cargo build -p storcon -p pageserver-sim" >&2; exit 1; }
done

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp" "$stage/state"
chmod 1777 "$root/tmp"

for bin in "${bins[@]}"; do
  # --strip-debug keeps symbols (backtraces name functions) and drops the DWARF bulk.
  objcopy --strip-debug "$bin" "$root/usr/local/bin/$(basename "$bin")"
  # Each ldd line names a library path (after "=>" or as the loader itself); vdso has none.
  while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
done

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
storcon:x:10001:10001:storcon:/var/lib/storcon:/sbin/nologin
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
storcon:x:10001:
GROUP
echo "hosts: files dns" > "$root/etc/nsswitch.conf"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
else
  echo "warning: no /etc/ssl/certs/ca-certificates.crt on this host; the image has no CA bundle" >&2
fi

for dir in storcon pageserver-sim pageserver-remote; do
  mkdir -p "$stage/state/$dir"
  chmod 0700 "$stage/state/$dir"
done

cp "$here/Dockerfile" "$stage/Dockerfile"
DOCKER_BUILDKIT=0 docker build --quiet --tag "$image" "$stage"
echo "built $image from $bin_dir ($("$root/usr/local/bin/storcon" --version))"
