#!/usr/bin/env bash
# Builds the raftcache container image FROM scratch, from binaries built here
# (nothing is pulled: there is no base image).
#
#   deploy/image/build.sh        # cargo build --release, then docker build
#
# Tags raftcache:dev and raftcache:<git short sha> (raftcache:<sha>-dirty
# when tracked files have uncommitted changes). The image holds raftcache and
# raftcachectl (debug info stripped), the shared libraries they link and the
# dynamic loader (as `ldd` lists them: glibc, whose files and dns NSS modules
# are built into libc.so.6 since 2.34), /etc/passwd and /etc/group with the
# user raftcache (uid and gid 10001), /etc/nsswitch.conf (hosts: files dns),
# /data owned by that user and /tmp (1777).
#
# Environment: CARGO_TARGET_DIR (where cargo builds, default ./target),
# IMAGE (repository name, default raftcache), NO_CARGO=1 (use the release
# binaries already built), MAX_IMAGE_BYTES (fail above this size, default
# 40000000), TAG (one more tag, e.g. the one a test asked for: the tree may
# change while the build runs).
set -euo pipefail
cd "$(dirname "$0")/../.."

image=${IMAGE:-raftcache}
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
max_bytes=${MAX_IMAGE_BYTES:-40000000}
uid=10001

die() {
  echo "build.sh: $*" >&2
  exit 1
}

command -v docker >/dev/null || die "docker is not installed"
command -v objcopy >/dev/null || die "objcopy is not installed (Debian: binutils)"

if [ "${NO_CARGO:-0}" != 1 ]; then
  cargo build --release -p raftcache-node -p raftcache-ctl
fi

# The build context: a root filesystem, the data directory, the Dockerfile.
ctx="$target_dir/image-context"
rootfs="$ctx/rootfs"
rm -rf "$ctx"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/tmp" "$ctx/data"
chmod 1777 "$rootfs/tmp"
cp deploy/image/Dockerfile "$ctx/Dockerfile"

# The binaries without their debug info (the release profile keeps line
# tables; the symbols stay, so a panic's backtrace still names functions).
libs=()
for bin in raftcache raftcachectl; do
  src="$target_dir/release/$bin"
  [ -x "$src" ] || die "$src is missing: build it (without NO_CARGO=1)"
  objcopy --strip-debug "$src" "$rootfs/usr/local/bin/$bin"
  chmod 0755 "$rootfs/usr/local/bin/$bin"
  # `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` and the loader,
  # `/lib64/ld-linux-x86-64.so.2 (0x…)`; not linux-vdso (the kernel's).
  deps=$(ldd "$src") || die "ldd $src failed: is it a dynamic executable?"
  if grep -q 'not found' <<<"$deps"; then
    die "$bin links a library that is not installed: $deps"
  fi
  while read -r lib; do
    libs+=("$lib")
  done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$deps")
done
grep -qx /lib64/ld-linux-x86-64.so.2 < <(printf '%s\n' "${libs[@]}") ||
  die "ldd did not list the dynamic loader /lib64/ld-linux-x86-64.so.2"
for lib in $(printf '%s\n' "${libs[@]}" | sort -u); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib" # the file itself, at the path the binary asks for
done

cat >"$rootfs/etc/passwd" <<EOF
root:x:0:0:root:/root:/sbin/nologin
raftcache:x:$uid:$uid:raftcache:/data:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<EOF
root:x:0:
raftcache:x:$uid:
EOF
cat >"$rootfs/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF

# Which builder: BuildKit needs the buildx plugin; without it, the legacy
# builder (enough for this Dockerfile).
if [ -z "${DOCKER_BUILDKIT:-}" ] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

revision=$(git rev-parse HEAD)
short=$(git rev-parse --short HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  short="$short-dirty"
  revision="$revision-dirty"
fi
extra_tag=()
if [ -n "${TAG:-}" ]; then extra_tag=(-t "$image:$TAG"); fi
docker build \
  --label "org.opencontainers.image.title=raftcache" \
  --label "org.opencontainers.image.revision=$revision" \
  -t "$image:dev" -t "$image:$short" "${extra_tag[@]}" \
  "$ctx"

size=$(docker image inspect --format '{{.Size}}' "$image:dev")
echo "built $image:dev and $image:$short: $size bytes"
if [ "$size" -gt "$max_bytes" ]; then
  die "the image is $size bytes, more than $max_bytes"
fi
