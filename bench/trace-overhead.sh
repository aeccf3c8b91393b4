#!/usr/bin/env bash
# What `twscope trace` costs the workload it watches (issue 12, item 7):
# connection-churn throughput without and with the tracer attached, on the
# same workload, alternating in one run.
#
#   sudo bench/trace-overhead.sh
#   sudo PAIRS=3 COUNT=100000 THREADS=4 bench/trace-overhead.sh
#
# A run is one `twscope-churn` of COUNT loopback connections (connect, close;
# REQUEST=1 adds a request and its reply) over PORTS server ports, THREADS
# client threads, unpaced (RATE= paces it), in a namespace of its own made for
# the run (ports 1024–65535, tcp_tw_reuse=1, room for 4M TIME_WAIT sockets, so
# every close leaves a TIME_WAIT, every run starts from none, and COUNT/PORTS
# connections per destination stay far below the ≈ 28k TIME_WAIT budget: no
# EADDRNOTAVAIL). PAIRS pairs of runs follow one warm-up run: without the
# tracer, then with it (ABAB…). A "with" run starts
#   twscope trace --duration 3600 --json --netns <the run's namespace>
# in the background, waits until its three tracepoint links are attached,
# churns, reads from the kernel what the tracer holds (every bpf-map fd's
# fdinfo: type, sizes, max_entries, memlock; names by map id), its RSS and
# its CPU time (/proc/PID/stat, and schedstat to the ns), and stops it with
# SIGINT; its JSON must count the churn's connections (connects of the
# churn's PID ≈ its attempts): a run where it counted under 99% is marked NOT
# SEEN. Throughput is the churn's own count over its own elapsed time; its
# user+sys (GNU time) is the CPU per connection, BPF programs included (they
# run in the churn's context).
#
# Then, unless BPF_STATS=0, one more "with" run (not in the pairs) with
# kernel.bpf_stats_enabled=1 for a while: each program's run count and run
# time, i.e. what the BPF half costs per event (the sysctl is put back).
#
# With PROFILE=1, two more runs (without, with; not in the pairs) with the
# churn under `perf record -e cpu-clock -g` (a software clock: no hardware
# counters are needed): where the CPU per connection goes, by kernel symbol,
# and what grows with the tracer (BPF programs, their helpers and maps, the
# tracepoint glue, the syscall-tracing path). Needs perf.
#
# Other engineers share the machine: before starting, it waits (at most
# LOAD_WAIT s) for the 1-minute load to fall to MAX_LOAD; before every run it
# samples for 2 s how busy the machine is without it (OTHERS_MAX cores at
# most; it waits up to another LOAD_WAIT s over all the runs) and records that
# with the run, and, after it, how much CPU the machine spent beyond the
# churn and the tracer during it (a few hundredths of a core when the machine
# is quiet: the kernel's softirq threads and the like; more means someone else
# ran).
#
# Needs root, iproute2, python3, GNU time. Removes every namespace and process
# it made (by PID), also on Ctrl-C or error.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-200000}
PAIRS=${PAIRS:-5}
THREADS=${THREADS:-2}
PORTS=${PORTS:-20}
REQUEST=${REQUEST:-0}
RATE=${RATE:-}
MAX_LOAD=${MAX_LOAD:-1.5}
OTHERS_MAX=${OTHERS_MAX:-0.25}
LOAD_WAIT=${LOAD_WAIT:-1200}
BPF_STATS=${BPF_STATS:-1}
PROFILE=${PROFILE:-0}
OUT=${OUT:-bench/results.md}

for tool in ip python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "trace-overhead.sh: $tool is missing (apt-get install iproute2 python3 time)" >&2; exit 1; }
done
if [ "$PROFILE" = 1 ]; then command -v perf >/dev/null || { echo "trace-overhead.sh: PROFILE=1 needs perf (apt-get install linux-perf)" >&2; exit 1; }; fi
[ "$(id -u)" = 0 ] || { echo "trace-overhead.sh: run as root (namespaces, eBPF)" >&2; exit 1; }

cargo build --release --locked --quiet --bins --workspace
# What was built (others may commit meanwhile): the commit, uncommitted
# changes to what goes into the binaries, the BPF object.
rev=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
dirty=$(git status --porcelain -- bpf crates Cargo.lock 2>/dev/null | awk '{ print $2 }' | grep -Ev '/(tests|benches)/' | paste -sd, - || true)
object=$(sha256sum bpf/tcptrace.bpf.o | cut -d' ' -f1)
TWSCOPE=${CARGO_TARGET_DIR:-$PWD/target}/release/twscope
CHURN=${CARGO_TARGET_DIR:-$PWD/target}/release/twscope-churn
HELPER=$PWD/bench/trace-overhead/report.py
work=$(mktemp -d)
prefix="twscope-trov-$$"
ns=""
tracer=""
stats_saved=""
cleanup() {
    if [ -n "$tracer" ]; then
        kill "$tracer" 2>/dev/null || true
        wait "$tracer" 2>/dev/null || true
    fi
    if [ -n "$ns" ]; then ip netns del "$ns" 2>/dev/null || true; fi
    if [ -n "$stats_saved" ]; then echo "$stats_saved" >/proc/sys/kernel/bpf_stats_enabled; fi
    if [ -n "${KEEP_WORK:-}" ]; then log "raw results kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "trace-overhead.sh: failed at line $LINENO" >&2' ERR

log() { echo "trace-overhead.sh: $(date +%T) $*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }
above() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)' "$1" "$2"; }
ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat; }
# Cores' worth of CPU the rest of the machine uses over 2 s (nothing of ours runs).
others() {
    local b1 i1 b2 i2
    read -r b1 i1 < <(ticks)
    sleep 2
    read -r b2 i2 < <(ticks)
    python3 -c 'import sys, os; b, i = int(sys.argv[1]), int(sys.argv[2]); print(f"{os.cpu_count() * b / max(1, b + i):.2f}")' $((b2 - b1)) $((i2 - i1))
}
# CPU time of process $1: "NS TICKS", NS the scheduler's sum_exec_runtime of
# its live threads (schedstat, to the ns), TICKS user+sys from /proc/PID/stat
# (clock ticks, with the threads that have ended).
cpu_of() {
    local ns
    ns=$({ cat "/proc/$1"/task/*/schedstat 2>/dev/null || true; } | awk '{ n += $1 } END { print n + 0 }')
    echo "$ns $(sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }')"
}
# shellcheck disable=SC2016 # awk's program
tw_in() { ip netns exec "$1" awk '/^TCP:/ { for (i = 2; i < NF; i += 2) if ($i == "tw") print $(i + 1) }' /proc/net/sockstat; }
waited=0
# Waits (bounded: LOAD_WAIT s over the whole run) until the rest of the
# machine is quiet; sets busy to the last sample.
busy=""
quiet() {
    busy=$(others)
    while above "$busy" "$OTHERS_MAX" && [ "$waited" -lt "$LOAD_WAIT" ]; do
        log "others use $busy cores (load $(load1)): waiting"
        sleep 20
        waited=$((waited + 22))
        busy=$(others)
    done
}

targets=()
for ((i = 0; i < PORTS; i++)); do targets+=(--target "127.0.0.1:$((7100 + i))"); done
churn_args=(--count "$COUNT" --threads "$THREADS" --json --max-seconds 300)
[ "$REQUEST" = 1 ] && churn_args+=(--request)
[ -n "$RATE" ] && churn_args+=(--rate "$RATE")

# One run: $1 = index, $2 = warmup | without | with | stats | prof-without |
# prof-with. Appends a JSON line to $work/runs.jsonl.
run() {
    local index=$1 kind=$2 load before i rc=0 links attach="0 0" done_cpu="0 0" wrap=() b1 i1 b2 i2
    quiet
    load=$(load1)
    ns="$prefix-$index"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sh -c '
        echo "1024 65535" > /proc/sys/net/ipv4/ip_local_port_range
        echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse
        echo 4000000 > /proc/sys/net/ipv4/tcp_max_tw_buckets'
    : >"$work/trace.$index.json"
    case $kind in
    prof-*) wrap=(perf record -q -e cpu-clock -F 1999 -g -o "$work/perf.$index.data" --) ;;
    esac
    if [ "$kind" = with ] || [ "$kind" = stats ] || [ "$kind" = prof-with ]; then
        "$TWSCOPE" trace --duration 3600 --json --netns "$ns" >"$work/trace.$index.json" 2>"$work/trace.$index.err" &
        tracer=$!
        for ((i = 0; i < 300; i++)); do
            links=$(find "/proc/$tracer/fd" -lname 'anon_inode:bpf_link' 2>/dev/null | wc -l)
            [ "$links" -ge 3 ] && break
            kill -0 "$tracer" 2>/dev/null || { cat "$work/trace.$index.err" >&2; log "the tracer ended before attaching"; exit 1; }
            sleep 0.1
        done
        [ "$links" -ge 3 ] || { log "the tracer did not attach within 30 s"; exit 1; }
        attach=$(cpu_of "$tracer")
    fi
    sleep 1
    before=$(tw_in "$ns")
    log "run $index ($kind): others $busy cores, load $load"
    read -r b1 i1 < <(ticks)
    /usr/bin/time -f '%e %U %S %M' -o "$work/time.$index" \
        "${wrap[@]}" "$CHURN" --netns "$ns" "${targets[@]}" "${churn_args[@]}" >"$work/churn.$index.json" 2>>"$work/churn.log"
    read -r b2 i2 < <(ticks)
    if [ -n "$tracer" ]; then
        done_cpu=$(cpu_of "$tracer")
        python3 "$HELPER" fdinfo "$tracer" >"$work/maps.$index.json"
        grep -E '^(VmRSS|VmHWM):' "/proc/$tracer/status" | awk '{ printf "%s %s\n", $1, $2 }' >"$work/rss.$index"
        kill -INT "$tracer"
        for ((i = 0; i < 300; i++)); do kill -0 "$tracer" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$tracer" 2>/dev/null && kill -KILL "$tracer"
        wait "$tracer" || rc=$?
        tracer=""
        [ "$rc" -le 2 ] || { cat "$work/trace.$index.err" >&2; log "the tracer failed ($rc)"; exit 1; }
    fi
    python3 "$HELPER" record "$work" "$index" "$kind" "busy=$busy" "load=$load" "tw_before=$before" "tw_after=$(tw_in "$ns")" \
        "attach=$attach" "done=$done_cpu" "machine_busy_ticks=$((b2 - b1))" "machine_ticks=$((b2 - b1 + i2 - i1))" \
        "clk_tck=$(getconf CLK_TCK)" >>"$work/runs.jsonl"
    tail -1 "$work/runs.jsonl" | cut -c1-300 >&2
    ip netns del "$ns"
    ns=""
}

load_start=$(load1)
for ((i = 0; i < LOAD_WAIT / 30; i++)); do
    above "$(load1)" "$MAX_LOAD" || break
    log "load $(load1) > $MAX_LOAD: waiting for the other builds and tests"
    sleep 30
done
load_measured=$(load1)
echo "{\"load_first\": \"$load_start\", \"load_start\": \"$load_measured\"}" >"$work/machine.json"

run 0 warmup
for ((pair = 1; pair <= PAIRS; pair++)); do
    run $((2 * pair - 1)) without
    run $((2 * pair)) with
done
if [ "$BPF_STATS" = 1 ]; then
    stats_saved=$(cat /proc/sys/kernel/bpf_stats_enabled)
    echo 1 >/proc/sys/kernel/bpf_stats_enabled
    run $((2 * PAIRS + 1)) stats
    echo "$stats_saved" >/proc/sys/kernel/bpf_stats_enabled
    stats_saved=""
fi

if [ "$PROFILE" = 1 ]; then
    run $((2 * PAIRS + 2)) prof-without
    run $((2 * PAIRS + 3)) prof-with
fi

args=(rev="$rev" dirty="$dirty" object="$object" COUNT="$COUNT" PAIRS="$PAIRS" THREADS="$THREADS" PORTS="$PORTS" REQUEST="$REQUEST" RATE="$RATE" load_end="$(load1)")
python3 "$HELPER" report "$work" "${args[@]}" >"$work/report.md"
{
    echo "### Run of $(date -u +%Y-%m-%dT%H:%MZ) (bench/trace-overhead.sh)"
    echo
    cat "$work/report.md"
} | tee -a "$OUT"
