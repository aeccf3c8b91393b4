#!/usr/bin/env bash
# Build the twscope container image: a statically linked release binary
# (glibc linked in) on an empty base (Containerfile at the repository root).
#
#   deploy/image.sh [--tag IMAGE] [--extract DIR]
#
#   --tag IMAGE    the image's name (default localhost/twscope:<version>)
#   --extract DIR  also unpack the image's whole filesystem into DIR, without
#                  running anything in it (podman create + podman export), to
#                  check what it holds or run its binary: chroot DIR /usr/bin/twscope
#
# Needs cargo, podman (Debian: apt-get install podman) and binutils (readelf,
# strip). The binary is built in target/image/ so that the static build never
# invalidates the normal one; the first build is a full release build (about
# 2 minutes on 2 cores), later ones reuse it. podman builds with --network none:
# the base is `scratch`, nothing is pulled. Where the overlay storage driver does
# not work, run with STORAGE_DRIVER=vfs. Prints the image name on stdout (last
# line); progress goes to stderr.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tag=""
extract=""
while (($#)); do
    case "$1" in
        --tag) tag=${2:?--tag needs an image name}; shift 2 ;;
        --extract) extract=${2:?--extract needs a directory}; shift 2 ;;
        -h | --help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "image.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done

for tool in podman readelf strip; do
    command -v "$tool" >/dev/null || { echo "image.sh: $tool not found (apt-get install podman binutils)" >&2; exit 1; }
done

# Static: -C target-feature=+crt-static with an explicit --target, so that the
# flag reaches twscope and its dependencies but not build scripts and proc
# macros (which the host must be able to load). Nothing inherited may override
# it: CARGO_ENCODED_RUSTFLAGS would take precedence over RUSTFLAGS.
target=$(rustc -vV | sed -n 's/^host: //p')
unset CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_BUILD_TARGET
echo "image.sh: building a static twscope for $target (target/image)" >&2
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$root/target/image" \
    "${CARGO:-cargo}" build --release --locked -p twscope --target "$target" \
    --manifest-path "$root/Cargo.toml" >&2
bin="$root/target/image/$target/release/twscope"

# Static means: no program interpreter (ld.so) and no shared library needed.
if readelf -lW "$bin" | grep -q 'INTERP'; then
    echo "image.sh: $bin has a program interpreter: it is not statically linked" >&2
    exit 1
fi
if readelf -dW "$bin" | grep -q '(NEEDED)'; then
    echo "image.sh: $bin needs shared libraries: $(readelf -dW "$bin" | grep '(NEEDED)' | tr -s ' ')" >&2
    exit 1
fi

version=$("$bin" --version | awk '{print $2}')
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
tag=${tag:-localhost/twscope:$version}

# A context of its own: the binary (without debug info: 24 MB → 6 MB) and the
# licence; the repository (and its target/) is never sent to podman.
context=$(mktemp -d)
container=""
cleanup() {
    [[ -n "$container" ]] && podman rm --force "$container" >/dev/null 2>&1
    rm -rf "$context"
}
trap cleanup EXIT
strip --strip-debug -o "$context/twscope" "$bin"
cp "$root/LICENSE" "$context/LICENSE"

echo "image.sh: podman build $tag" >&2
podman build --network none --layers=false --file "$root/Containerfile" \
    --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
    --tag "$tag" "$context" >&2

if [[ -n "$extract" ]]; then
    # A container is created, never started: its filesystem is the image's.
    mkdir -p "$extract"
    container=$(podman create "$tag")
    podman export "$container" | tar -x -C "$extract"
    echo "image.sh: image filesystem unpacked in $extract" >&2
fi

echo "$tag"
