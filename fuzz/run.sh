#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for a bounded time; exits
# non-zero if any target crashes (a panic, a failed assertion, a hang past
# libFuzzer's -timeout, a sanitizer report).
#
#   fuzz/run.sh                          every target, 60 s each
#   fuzz/run.sh sockdiag_batch web_config   only these
#   fuzz/run.sh --build-only             build every target, run none (CI builds
#                                        them before the tests; the run after
#                                        them then finds the build done)
#
# Environment:
#   TWSCOPE_FUZZ_SECONDS   time per target (default 60)
#   TWSCOPE_FUZZ_PARALLEL  targets run at once (default: the number of CPUs;
#                          each libFuzzer process uses one core)
#
# The committed seeds in corpus/<target>/ are only read; what a run finds goes
# to corpus-local/<target>/ (git-ignored) and is reused by the next run on the
# same machine. A crash leaves its input in artifacts/<target>/ and the log in
# target/fuzz-logs/<target>.log. Reproduce and minimise it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -a <target> artifacts/<target>/crash-…
#   RUSTC_BOOTSTRAP=1 cargo fuzz tmin -a <target> artifacts/<target>/crash-…
#
# A longer session before a release — an hour per target, then keep the
# corpus it grew small and add a few of its inputs to the seeds:
#   TWSCOPE_FUZZ_SECONDS=3600 fuzz/run.sh
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz cmin -a <target> corpus-local/<target>
# or one target on every core with libFuzzer's own workers:
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -a <target> corpus-local/<target> corpus/<target> \
#       -- -max_total_time=14400 -jobs="$(nproc)" -workers="$(nproc)"
#
# cargo-fuzz drives rustc's own libFuzzer and sanitizer support (no clang);
# it needs -Z flags, which RUSTC_BOOTSTRAP=1 allows on the stable toolchain.
# Targets are built with optimizations plus debug assertions and overflow
# checks (-a), so arithmetic overflow is a crash as in a debug build.
set -euo pipefail
cd "$(dirname "$0")"

export RUSTC_BOOTSTRAP=1
build_only=0
if [[ "${1-}" == --build-only ]]; then
    build_only=1
    shift
fi
seconds="${TWSCOPE_FUZZ_SECONDS:-60}"
parallel="${TWSCOPE_FUZZ_PARALLEL:-$(nproc)}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ && "$parallel" =~ ^[1-9][0-9]*$ ]]; then
    echo "run.sh: TWSCOPE_FUZZ_SECONDS and TWSCOPE_FUZZ_PARALLEL must be positive whole numbers" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if (($#)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

# The committed fuzz/Cargo.lock is used as is (cargo fuzz has no --locked).
cargo fetch --locked --target "$(rustc -vV | sed -n 's/^host: //p')"
# One build for every target, so the timed runs below only fuzz.
cargo fuzz build -a
if ((build_only)); then
    echo "fuzz targets built"
    exit 0
fi

mkdir -p target/fuzz-logs
run_one() {
    local target="$1" corpora=("corpus-local/$1")
    mkdir -p "corpus-local/$target"
    [[ -d "corpus/$target" ]] && corpora+=("corpus/$target")
    # -timeout: one input running this long is a hang, reported as a crash.
    cargo fuzz run -a "$target" "${corpora[@]}" -- \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
        >"target/fuzz-logs/$target.log" 2>&1
}

summary() {
    local target="$1" log="target/fuzz-logs/$1.log" edges final
    edges=$(sed -nE 's/.*\(([0-9]+) inline 8-bit counters\).*/\1/p' "$log" | head -1)
    final=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 | sed -E 's/^#([0-9]+)[[:space:]]+DONE[[:space:]]+cov: ([0-9]+).*corp: ([0-9]+).*/\1 runs, \2 of EDGES edges covered, \3 inputs in the corpus/' || true)
    echo "  ${final/EDGES/${edges:-?}}"
}

declare -A pid_target=()
failed=()
finish_one() {
    local pid status=0
    wait -n -p pid "${!pid_target[@]}" || status=$?
    local target="${pid_target[$pid]}"
    unset "pid_target[$pid]"
    if ((status == 0)); then
        echo "ok      $target"
        summary "$target"
    else
        echo "CRASHED $target (exit $status): log target/fuzz-logs/$target.log, input in artifacts/$target/"
        grep -E 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY:|Test unit written to' \
            "target/fuzz-logs/$target.log" | head -20 | sed 's/^/    /' || true
        failed+=("$target")
    fi
}

echo "fuzzing ${#targets[@]} targets, ${seconds} s each, ${parallel} at a time"
for target in "${targets[@]}"; do
    while ((${#pid_target[@]} >= parallel)); do
        finish_one
    done
    run_one "$target" &
    pid_target[$!]="$target"
done
while ((${#pid_target[@]})); do
    finish_one
done

if ((${#failed[@]})); then
    echo "fuzzing found crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzzing: no crash in ${#targets[@]} targets"
