#!/usr/bin/env bash
# Whole-process cost of `twscope status --processes` (who holds each
# destination's live sockets) against `ss -tanp`, side by side in one
# hyperfine run per population size (issue 12).
#
#   sudo bench/processes.sh                        # 10k, then 100k sockets over 1,000 processes
#   sudo SOCKETS="10000" RUNS=5 PEERS="outside inside" bench/processes.sh
#
# For each size in SOCKETS and each peer placement in PEERS it builds:
#   the namespace read   PROCS client processes (bench/holder.c, compiled
#                        here) holding SOCKETS / PROCS ESTABLISHED
#                        connections each, over NPORTS destination ports
#   the peers            NPORTS server processes accepting and holding the
#                        other ends: "outside" in a second namespace joined
#                        by a veth pair (the database in another pod of the
#                        node: their sockets are processes outside the
#                        namespace, as the host's own are); "inside" on the
#                        namespace's loopback (both ends in it: the scan
#                        must read every one of them)
# and times, inside the namespace read:
#   twscope status --netns NS --processes                  the text report
#   twscope status --netns NS --processes --json --top 0   every destination
#   twscope status --netns NS                              the same without processes
#   ss -tanp | wc -l                                       what people run today
#   ss -tan | wc -l                                        ss without -p
# The host's own processes stay where they are; every process on the host is
# listed with the results. Each timed twscope run's owners are checked: the
# sockets it attributes must be every live socket the clients hold.
# Needs root, iproute2, hyperfine, GNU time, python3 and a C compiler. Every
# process it starts ends by HOLD_SECONDS (alarm) and is ended by PID, its
# namespaces removed, also on Ctrl-C or error.
set -euo pipefail
cd "$(dirname "$0")/.."

SOCKETS=${SOCKETS:-"10000 100000"}
PROCS=${PROCS:-1000}
PEERS=${PEERS:-"outside inside"}
RUNS=${RUNS:-3}
HOLD_SECONDS=${HOLD_SECONDS:-900}
OUT=${OUT:-bench/results.md}

for tool in ip ss hyperfine /usr/bin/time python3 cc; do
    command -v "$tool" >/dev/null || { echo "processes.sh: $tool is missing (apt-get install iproute2 hyperfine time python3 gcc)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "processes.sh: run as root (it creates network namespaces)" >&2; exit 1; }

cargo build --release --locked --quiet -p twscope
TWSCOPE=${CARGO_TARGET_DIR:-$PWD/target}/release/twscope
work=$(mktemp -d)
cc -O2 -Wall -o "$work/holder" bench/holder.c
HOLDER=$work/holder
clients="twscope-bench-procs-$$-c"
servers="twscope-bench-procs-$$-s"
declare -A running # every process started and not yet ended, by PID
cleanup() {
    local pid
    for pid in "${!running[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${!running[@]}"; do wait "$pid" 2>/dev/null || true; done
    ip netns del "$clients" 2>/dev/null || true
    ip netns del "$servers" 2>/dev/null || true
    if [ -n "${KEEP_WORK:-}" ]; then log "raw results kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "processes.sh: $(date +%T) $*" >&2; }

# Starts `holder ARGS…` in namespace $1 with its stdout in file $2; waits (at
# most 120 s) until it says ready.
start_holder() {
    local ns=$1 out=$2 i
    shift 2
    : >"$out" # no "ready" of an earlier phase
    ip netns exec "$ns" "$HOLDER" "$@" >"$out" &
    running[$!]=1
    for ((i = 0; i < 1200; i++)); do
        grep -q ready "$out" && return 0
        kill -0 "$!" 2>/dev/null || { log "holder $* failed"; exit 1; }
        sleep 0.1
    done
    log "holder $* not ready after 120 s"
    exit 1
}

# Ends every process started (by PID) and removes the namespaces.
teardown() {
    local pid
    for pid in "${!running[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        unset "running[$pid]"
    done
    ip netns del "$clients" 2>/dev/null || true
    ip netns del "$servers" 2>/dev/null || true
}

{
    echo "### Run of $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(ss -V | sed 's/.*iproute2-/iproute2 /')."
    echo "hyperfine $(hyperfine --version | cut -d' ' -f2), $RUNS runs per command after 1 warm-up, inside the namespace read; $PROCS client processes."
    echo
    echo "| live sockets | peers | processes in the namespace / on the host | load before | command | wall mean ± sd | user | sys | max RSS | wall vs \`ss -tanp\` |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
} >"$work/table.md"

for sockets in $SOCKETS; do
    per_proc=$(((sockets + PROCS - 1) / PROCS))
    nports=$(((sockets + 9999) / 10000))
    [ "$nports" -lt 10 ] && nports=10
    per_port=$(((PROCS * per_proc + nports - 1) / nports + 100))
    for peers in $PEERS; do
        log "$sockets sockets ($PROCS × $per_proc) over $nports ports, peers $peers"
        ip netns add "$clients"
        ip -n "$clients" link set lo up
        ip netns exec "$clients" sysctl -qw net.ipv4.ip_local_port_range="1024 65535"
        if [ "$peers" = outside ]; then
            ip netns add "$servers"
            ip -n "$servers" link set lo up
            ip -n "$clients" link add veth-c type veth peer name veth-s netns "$servers"
            ip -n "$clients" addr add 10.77.0.1/24 dev veth-c
            ip -n "$servers" addr add 10.77.0.2/24 dev veth-s
            ip -n "$clients" link set veth-c up
            ip -n "$servers" link set veth-s up
            server_ns=$servers
        else
            ip -n "$clients" addr add 10.77.0.2/32 dev lo
            server_ns=$clients
        fi
        # A server holds per_port descriptors: raise the open-file limit
        # (the hard limit here is 20,000) for the holders started below.
        ulimit -n "$(ulimit -Hn)"
        for ((i = 0; i < nports; i++)); do
            start_holder "$server_ns" "$work/server.$i" serve 10.77.0.2 $((7000 + i)) "$per_port" "$HOLD_SECONDS"
        done
        start_holder "$clients" "$work/clients" connect 10.77.0.2 7000 "$nports" "$PROCS" "$per_proc" "$HOLD_SECONDS"
        live=$(ip netns exec "$clients" ss -Htn state established "( dport >= :7000 and dport < :$((7000 + nports)) )" | wc -l)
        in_ns=$(ip netns exec "$clients" sh -c 'n=0; me=$(stat -Lc %i /proc/self/ns/net); for p in /proc/[0-9]*; do [ "$(stat -Lc %i $p/ns/net 2>/dev/null)" = "$me" ] && n=$((n + 1)); done; echo $n')
        on_host=$(find /proc -maxdepth 1 -name '[0-9]*' | wc -l)
        log "$live live client sockets; $in_ns processes in the namespace, $on_host on the host"

        ip netns exec "$clients" "$TWSCOPE" status --netns "$clients" --processes --json --top 0 >"$work/check.json" || [ $? -le 2 ]
        owned=$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(sum(p["sockets"] for x in d["destinations"] for p in x["processes"]))' "$work/check.json")
        [ "$owned" = "$live" ] || { log "twscope attributed $owned sockets of $live"; exit 1; }

        key="$sockets.$peers"
        load=$(cut -d' ' -f1 /proc/loadavg)
        ip netns exec "$clients" hyperfine --warmup 1 --runs "$RUNS" --style none --export-json "$work/$key.json" \
            -n "twscope -p" "$TWSCOPE status --netns $clients --processes > /dev/null; [ \$? -le 2 ]" \
            -n "twscope -p --json --top 0" "$TWSCOPE status --netns $clients --processes --json --top 0 > /dev/null; [ \$? -le 2 ]" \
            -n "twscope (no -p)" "$TWSCOPE status --netns $clients > /dev/null; [ \$? -le 2 ]" \
            -n "ss -tanp | wc -l" "ss -tanp | wc -l" \
            -n "ss -tan | wc -l" "ss -tan | wc -l" >&2
        rss_twscope=$(ip netns exec "$clients" /usr/bin/time -f %M "$TWSCOPE" status --netns "$clients" --processes --json --top 0 2>&1 >/dev/null | tail -1)
        rss_ss=$(ip netns exec "$clients" /usr/bin/time -f %M ss -tanp 2>&1 >/dev/null | tail -1)
        python3 - "$work/$key.json" "$live" "$peers" "$in_ns" "$on_host" "$rss_twscope" "$rss_ss" "$load" >>"$work/table.md" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
live, peers, in_ns, on_host, rss_tw, rss_ss, load = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7]), sys.argv[8]
ss_p = results["ss -tanp | wc -l"]["mean"]
rss = {"twscope -p --json --top 0": f"{rss_tw / 1024:.1f} MiB", "ss -tanp | wc -l": f"{rss_ss / 1024:.1f} MiB (ss)"}
for name, r in results.items():
    cmd = name.replace("|", "\\|")
    print(f"| {int(live):,} | {peers} | {in_ns} / {on_host} | {load} | {cmd} | {r['mean']:.3f} ± {r['stddev']:.3f} s | "
          f"{r['user']:.3f} s | {r['system']:.3f} s | {rss.get(name, '—')} | {r['mean'] / ss_p:.3f}× |")
PY
        teardown
    done
done

tee -a "$OUT" <"$work/table.md"
echo >>"$OUT"
