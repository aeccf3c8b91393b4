#!/usr/bin/env bash
# Builds the tracer's BPF objects from their sources with Debian's clang and
# libbpf headers (apt: clang llvm libbpf-dev). The objects are committed beside
# the sources, so `cargo build` needs no clang.
#
#   bpf/build.sh           rebuild bpf/*.bpf.o in place
#   bpf/build.sh --check   rebuild into a temporary directory and fail if any
#                          object differs from the committed one (CI)
#
# The build is reproducible: the same clang gives the same bytes (paths are
# mapped to "bpf/", DWARF is stripped, the BTF CO-RE needs is kept).
set -euo pipefail
cd "$(dirname "$0")"
check=0
[[ "${1:-}" == "--check" ]] && check=1

clang=${CLANG:-clang}
strip=${LLVM_STRIP:-llvm-strip}
for tool in "$clang" "$strip"; do
    command -v "$tool" >/dev/null || { echo "bpf/build.sh: $tool not found (apt install clang llvm libbpf-dev)" >&2; exit 2; }
done
[[ -f /usr/include/bpf/bpf_helpers.h ]] || { echo "bpf/build.sh: libbpf headers not found (apt install libbpf-dev)" >&2; exit 2; }

out=.
if ((check)); then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
multiarch=$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")
status=0
for src in *.bpf.c; do
    obj="$out/${src%.c}.o"
    "$clang" -target bpf -mcpu=v3 -O2 -g -Wall -Werror \
        -I/usr/include/"$multiarch" -I. \
        -fdebug-prefix-map="$PWD"=bpf -fmacro-prefix-map="$PWD"=bpf \
        -c "$src" -o "$obj"
    "$strip" -g "$obj"
    if ((check)); then
        if cmp -s "$obj" "${src%.c}.o"; then
            echo "bpf/${src%.c}.o matches bpf/$src ($("$clang" --version | head -1))"
        else
            echo "bpf/${src%.c}.o differs from a build of bpf/$src: run bpf/build.sh and commit the object" >&2
            status=1
        fi
    else
        echo "built bpf/${src%.c}.o"
    fi
done
exit $status
