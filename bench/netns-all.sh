#!/usr/bin/env bash
# Whole-process cost of `twscope status --netns all --json` on a node of many
# network namespaces, side by side in one run with the single-namespace census
# of the same sockets and with the shell loop a person writes today (issue 11).
#
#   sudo bench/netns-all.sh
#   sudo IDLE_COUNTS="10 100" NODE_SOCKETS=100000 RUNS=3 bench/netns-all.sh
#
# Every namespace is made with `ip netns add` (as CNI and Docker do: a bind
# mount) and holds one sleeping process (a pod's pause container), so the
# census finds it through /proc/PID/ns/net as on a real node. Phases, in order:
#
#   baseline  one empty namespace and nothing else loaded: the cost of
#             `twscope status --netns EMPTY --json` (a dump that finds nothing)
#   node      NODE_SOCKETS client TIME_WAIT sockets spread evenly over NODE_NS
#             namespaces (5,000 each by default), churned by twscope-churn in
#             PARALLEL namespaces at a time. A run takes seconds here (every
#             namespace's dump walks the host's whole established hash), so
#             the node is built ROUNDS times and each round times one run of
#             twscope --netns all (odd rounds) or of the shell loop (even
#             ones), then three of the empty namespace's dump; the last round
#             also probes what one raw dump costs the kernel by the states
#             it asks for (see probe below)
#   single    the same NODE_SOCKETS in ONE namespace (the node's namespaces
#             are deleted first, so the machine holds the same sockets):
#             `twscope status --netns NAME --json --top 0` (census.sh's
#             census; --netns only enters the namespace), twscope --netns all
#             over that node, and the empty namespace's dump
#   claim     CLAIM_SOCKETS (1M) in one namespace: the empty dump again
#   ehash     the node again, every namespace created inside a parent whose
#             net.ipv4.tcp_child_ehash_entries is CHILD_EHASH, so each has its
#             own established hash instead of sharing the host's (0: skipped)
#   idle      IDLE_COUNTS (10, 100, 1,000) namespaces, added incrementally,
#             one in LOADED_EVERY (20) with a small load: a listener, 3
#             ESTABLISHED connections and ≈ 5 TIME_WAIT sockets on loopback
#             (a Python process re-makes them every 30 s); timed: twscope
#             --netns all and the shell loop
#
# The shell loop is, timed as one `bash` process:
#   for p in <each namespace's sleeper>; do nsenter --net=/proc/$p/ns/net ss -Htan | wc -l; done
# TIME_WAIT lasts 60 s: each loaded phase is built just before it is timed,
# and the TIME_WAIT count of its namespaces before and after the timings is
# recorded with the results. The max RSS of every timed run is taken by GNU
# time around it. Needs root, iproute2, util-linux (nsenter), hyperfine, GNU
# time and python3. Removes every namespace and process it made (by PID),
# also on Ctrl-C or error; every process it starts ends by HOLD_SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

IDLE_COUNTS=${IDLE_COUNTS:-"10 100 1000"}
LOADED_EVERY=${LOADED_EVERY:-20}
NODE_NS=${NODE_NS:-100}
NODE_SOCKETS=${NODE_SOCKETS:-500000}
CLAIM_SOCKETS=${CLAIM_SOCKETS:-1000000}
CHILD_EHASH=${CHILD_EHASH:-16384}
PARALLEL=${PARALLEL:-10}
RUNS=${RUNS:-5}
ROUNDS=${ROUNDS:-6}
HOLD_SECONDS=${HOLD_SECONDS:-1800}
PHASES=${PHASES:-"baseline node single claim ehash idle"}
OUT=${OUT:-bench/results.md}

for tool in ip ss nsenter hyperfine /usr/bin/time python3; do
    command -v "$tool" >/dev/null || { echo "netns-all.sh: $tool is missing (apt-get install iproute2 util-linux hyperfine time python3)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "netns-all.sh: run as root (it creates network namespaces)" >&2; exit 1; }

cargo build --release --locked --quiet -p twscope -p twscope-lab
TWSCOPE=${CARGO_TARGET_DIR:-$PWD/target}/release/twscope
CHURN=${CARGO_TARGET_DIR:-$PWD/target}/release/twscope-churn
LIB=$PWD/bench/lib.sh
work=$(mktemp -d)
prefix="twscope-nsall-$$"
namespaces=()       # every namespace made, for the cleanup
declare -A running  # every process started and not yet ended, by PID
cleanup() {
    local pid ns
    for pid in "${!running[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${!running[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    if [ -n "${KEEP_WORK:-}" ]; then log "raw results kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "netns-all.sh: $(date +%T.%2N) $*" >&2; }

# A sleeping process in namespace $1 (it is the namespace's process on the
# node); its PID goes to the file $2.
start_sleeper() {
    nsenter --net="/run/netns/$1" sleep "$HOLD_SECONDS" &
    running[$!]=1
    echo "$!" >>"$2"
}

# Ends the processes whose PIDs are in the files $2… and removes the
# namespaces named in file $1.
teardown() {
    local pid ns file list=$1
    shift
    for file in "$@"; do
        while read -r pid; do
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            unset "running[$pid]"
        done <"$file"
        : >"$file"
    done
    while read -r ns; do ip netns del "$ns" 2>/dev/null || true; done <"$list"
    : >"$list"
    # The kernel frees a deleted namespace's sockets in the background: wait
    # (at most 60 s) until the node's TIME_WAIT sockets are back near zero.
    local i
    for ((i = 0; i < 120; i++)); do
        [ "$(slab_tw)" -lt 20000 ] && break
        sleep 0.5
    done
    sleep 1
}

# TIME_WAIT sockets in the whole node, every namespace (active objects of the
# kernel's tw_sock_TCP and tw_sock_TCPv6 caches).
slab_tw() { awk '$1 == "tw_sock_TCP" || $1 == "tw_sock_TCPv6" { n += $2 } END { print n + 0 }' /proc/slabinfo; }

# TIME_WAIT sockets of the namespaces whose sleepers are listed in file $1.
tw_of() {
    local files
    files=$(sed 's|.*|/proc/&/net/sockstat|' "$1")
    # shellcheck disable=SC2086
    { cat $files 2>/dev/null || true; } | awk '/^TCP:/ { for (i = 2; i < NF; i += 2) if ($i == "tw") n += $(i + 1) } END { print n + 0 }'
}

load_now() { cut -d' ' -f1-3 /proc/loadavg; }

# The shell loop over the sleepers listed in file $1, as a script for bash.
write_loop() {
    cat >"$2" <<EOF
for p in \$(cat $1); do nsenter --net=/proc/\$p/ns/net ss -Htan | wc -l; done
EOF
}

# hyperfine over NAME COMMAND pairs (each COMMAND says where its output
# goes); each runs under GNU time, which appends its max RSS (KiB) to
# $work/rss.<phase>.<n>. twscope's exit codes 1 and 2 (warning, critical) are
# success here, 3 is not.
# Usage: timed PHASE RUNS WARMUP NAME COMMAND [NAME COMMAND]…
commands=0
timed() {
    local phase=$1 runs=$2 warmup=$3 n args=()
    shift 3
    while [ $# -gt 0 ]; do
        n=$((commands++))
        args+=(-n "$1" "/usr/bin/time -f %M -a -o $work/rss.$phase.$n $2; [ \$? -le 2 ]")
        echo "$1" >"$work/name.$phase.$n"
        shift 2
    done
    log "timing $phase: ${args[1]} …"
    hyperfine --warmup "$warmup" --runs "$runs" --style none --export-json "$work/hf.$phase.$(date +%s%N).json" "${args[@]}" >&2
    log "timed"
}

# Appends the hyperfine results of phase $1 since the last record to
# results.jsonl (one line per command, with every run's time), with the facts
# given as KEY=VALUE.
record() {
    local phase=$1
    shift
    python3 - "$work" "$phase" "$@" >>"$work/results.jsonl" <<'PY'
import glob, json, sys
work, phase, facts = sys.argv[1], sys.argv[2], dict(a.split("=", 1) for a in sys.argv[3:])
names = {}
for f in glob.glob(f"{work}/name.{phase}.*"):
    names.setdefault(open(f).read().strip(), []).append(f.rsplit(".", 1)[1])
for f in sorted(glob.glob(f"{work}/hf.{phase}.*.json")):
    for r in json.load(open(f))["results"]:
        rss = [int(l) for n in names[r["command"]] for l in open(f"{work}/rss.{phase}.{n}") if l.strip().isdigit()]
        print(json.dumps({"phase": phase, "command": r["command"], "times": r["times"],
                          "user": r["user"], "system": r["system"], "rss_kib": max(rss), **facts}))
PY
    rm -f "$work"/hf."$phase".*.json
    tail -n +"$((recorded + 1))" "$work/results.jsonl" | cut -c1-400 >&2
    recorded=$(wc -l <"$work/results.jsonl")
}
recorded=0

# What the last timed `twscope status --netns all --json` saw: namespaces
# found, idle, listed (dumped), and the TIME_WAIT sockets of those listed.
node_facts() {
    python3 - "$work/all.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
tw = sum(n["states"]["TIME_WAIT"] for n in d["namespaces"] if "states" in n)
print(f"found={d['found']} idle={d['idle']} dumped={len(d['namespaces'])} node_tw={tw}")
PY
}

# What one sock_diag dump costs the kernel in namespace $2, by the states it
# asks for: the dump twscope makes (every state but LISTEN: 0xfffffbff, which
# includes bit 13, TCP_BOUND_INACTIVE, a walk of the bind hash), states 1–12
# only (the established hash alone, as `ss -tan` asks), and bit 13 alone, for
# AF_INET; then states 1–12 for AF_INET6, and for both families in one walk
# (the old TCPDIAG_GETSOCK request, which the kernel serves as AF_UNSPEC).
# Each 5 times from a raw netlink socket; appends to probes.jsonl.
# $1: phase, $3: what the namespace is.
probe() {
    nsenter --net="/run/netns/$2" python3 - "$1" "$3" >>"$work/probes.jsonl" <<'PY'
import json, socket, struct, sys, time
def dump(kind, request):
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)   # NETLINK_SOCK_DIAG
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    start, n, done = time.perf_counter(), 0, False
    s.send(struct.pack("=IHHII", 16 + len(request), kind, 0x301, 1, 0) + request)   # NLM_F_REQUEST | NLM_F_DUMP
    while not done:
        data, off = s.recv(1 << 20), 0
        while off < len(data):
            length, reply = struct.unpack_from("=IH", data, off)
            if reply in (2, 3):   # NLMSG_ERROR, NLMSG_DONE
                done = True
                break
            n, off = n + 1, off + ((length + 3) & ~3)
    s.close()
    return time.perf_counter() - start, n
v2 = lambda family, states: (20, struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, states) + bytes(48))   # SOCK_DIAG_BY_FAMILY
compat = lambda states: (18, struct.pack("=BBBB", socket.AF_INET, 0, 0, 0) + bytes(48) + struct.pack("=II", states, 0))   # TCPDIAG_GETSOCK
for name, (kind, request) in (
        ("AF_INET, 0xfffffbff (twscope: all but LISTEN)", v2(socket.AF_INET, 0xFFFFFBFF)),
        ("AF_INET, 0x1bfe (states 1–12 but LISTEN)", v2(socket.AF_INET, 0x1BFE)),
        ("AF_INET, 0x2000 (TCP_BOUND_INACTIVE)", v2(socket.AF_INET, 0x2000)),
        ("AF_INET6, 0x1bfe", v2(socket.AF_INET6, 0x1BFE)),
        ("both in one walk (TCPDIAG_GETSOCK), 0x1bfe", compat(0x1BFE))):
    runs = [dump(kind, request) for _ in range(5)]
    times = sorted(t for t, _ in runs)
    print(json.dumps({"phase": sys.argv[1], "where": sys.argv[2], "mask": name, "min": times[0], "median": times[2],
                      "sockets": runs[0][1]}))
PY
}

# Builds the node: NODE_SOCKETS client TIME_WAIT sockets over NODE_NS
# namespaces (fill_namespace, PARALLEL at a time), each with a sleeper.
# $1: a namespace to create them from ("" for the host's). A churn cut short
# by Ctrl-C ends by itself within its 50 s (fill_namespace's --max-seconds).
build_node() {
    local parent=$1 per=$((NODE_SOCKETS / NODE_NS)) i ns jobs=() job failed=0 start
    start=$(date +%s.%N)
    for ((i = 0; i < NODE_NS; i++)); do
        ns="$prefix-n$i"
        namespaces+=("$ns")
        echo "$ns" >>"$work/node.ns"
        if [ -n "$parent" ]; then
            # shellcheck disable=SC2016 # expanded by the inner bash
            nsenter --net="/run/netns/$parent" bash -c '. "$1"; fill_namespace "$2" "$3" "$4"' _ "$LIB" "$ns" "$per" "$CHURN" 2>>"$work/churn.log" &
        else
            ( fill_namespace "$ns" "$per" "$CHURN" ) 2>>"$work/churn.log" &
        fi
        jobs+=($!)
        if [ ${#jobs[@]} -ge "$PARALLEL" ] || [ $((i + 1)) -eq "$NODE_NS" ]; then
            for job in "${jobs[@]}"; do wait "$job" || failed=$((failed + 1)); done
            jobs=()
        fi
    done
    for ((i = 0; i < NODE_NS; i++)); do start_sleeper "$prefix-n$i" "$work/node.pids"; done
    built_in=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
    log "node of $NODE_NS namespaces × $per sockets built in $built_in s ($failed churns fell short)"
    : >"$work/churn.log"
}

# The empty namespace of the `--netns EMPTY` dumps (with a sleeper, so that
# --netns all skips it as it skips any idle namespace).
empty="$prefix-empty"
namespaces+=("$empty")
ip netns add "$empty"
start_sleeper "$empty" "$work/empty.pids"
EMPTY_CMD="$TWSCOPE status --netns $empty --json > /dev/null"
ALL_CMD="$TWSCOPE status --netns all --json > $work/all.json"

echo "load=$(load_now)" >"$work/machine"
facts=""
for phase in $PHASES; do
    log "phase $phase (load $(load_now))"
    case $phase in
    baseline)
        load=$(load_now)
        slab=$(slab_tw)
        timed baseline $((RUNS * 4)) 3 "empty namespace" "$EMPTY_CMD"
        record baseline "load=$load" "slab_tw=$slab" "elsewhere=0"
        ;;
    node | ehash)
        # One timed run of one command per round, on a freshly built node:
        # with the host's shared established hash a run takes seconds, and
        # a round must fit in the 60 s the sockets live.
        parent=""
        if [ "$phase" = ehash ]; then
            [ "$CHILD_EHASH" -gt 0 ] || continue
            parent="$prefix-parent"
            namespaces+=("$parent")
            ip netns add "$parent"
            ip netns exec "$parent" sysctl -q -w net.ipv4.tcp_child_ehash_entries="$CHILD_EHASH"
            # And an empty namespace with an established hash of its own.
            namespaces+=("$empty-own")
            nsenter --net="/run/netns/$parent" ip netns add "$empty-own"
        fi
        for ((round = 1; round <= ROUNDS; round++)); do
            build_node "$parent"
            write_loop "$work/node.pids" "$work/loop.node.sh"
            load=$(load_now)
            slab=$(slab_tw)
            before=$(tw_of "$work/node.pids")
            if [ $((round % 2)) = 1 ]; then
                timed "$phase" 1 0 "twscope --netns all" "$ALL_CMD"
            else
                timed "$phase" 1 0 "shell loop" "bash $work/loop.node.sh > /dev/null"
            fi
            after=$(tw_of "$work/node.pids")
            [ -s "$work/all.json" ] && facts=$(node_facts)
            # shellcheck disable=SC2086
            record "$phase" "round=$round" "load=$load" "slab_tw=$slab" "namespaces=$NODE_NS" "before=$before" "after=$after" "built_s=$built_in" $facts
            before=$after
            timed "$phase" 3 0 "empty namespace" "$EMPTY_CMD"
            if [ "$round" = "$ROUNDS" ]; then
                probe "$phase" "$empty" "empty namespace"
                [ "$phase" = ehash ] && probe "$phase" "$empty-own" "empty namespace, own ehash"
                probe "$phase" "$prefix-n0" "a loaded namespace"
            fi
            after=$(tw_of "$work/node.pids")
            # shellcheck disable=SC2086
            record "$phase" "round=$round" "load=$load" "slab_tw=$slab" "namespaces=$NODE_NS" "before=$before" "after=$after" $facts
            teardown "$work/node.ns" "$work/node.pids"
        done
        if [ -n "$parent" ]; then ip netns del "$empty-own"; ip netns del "$parent"; fi
        ;;
    single | claim)
        count=$NODE_SOCKETS
        [ "$phase" = claim ] && count=$CLAIM_SOCKETS
        [ "$count" -gt 0 ] || continue
        ns="$prefix-$phase"
        namespaces+=("$ns")
        echo "$ns" >"$work/$phase.ns"
        fill_namespace "$ns" "$count" "$CHURN"
        start_sleeper "$ns" "$work/$phase.pids"
        load=$(load_now)
        slab=$(slab_tw)
        before=$(tw_of "$work/$phase.pids")
        if [ "$phase" = single ]; then
            timed single "$RUNS" 1 "single-namespace census" "$TWSCOPE status --netns $ns --json --top 0 > /dev/null" \
                "twscope --netns all" "$ALL_CMD" "empty namespace" "$EMPTY_CMD"
            facts=$(node_facts)
        else
            timed claim $((RUNS * 2)) 1 "empty namespace" "$EMPTY_CMD"
            facts=""
        fi
        after=$(tw_of "$work/$phase.pids")
        # shellcheck disable=SC2086
        record "$phase" "load=$load" "slab_tw=$slab" "namespaces=1" "before=$before" "after=$after" $facts
        teardown "$work/$phase.ns" "$work/$phase.pids"
        ;;
    idle)
        made=0
        for target in $IDLE_COUNTS; do
            for ((; made < target; made++)); do
                ns="$prefix-i$made"
                namespaces+=("$ns")
                echo "$ns" >>"$work/idle.ns"
                ip netns add "$ns"
                start_sleeper "$ns" "$work/idle.pids"
                if [ $((made % LOADED_EVERY)) -eq 0 ]; then
                    ip -n "$ns" link set lo up
                    nsenter --net="/run/netns/$ns" python3 - "$HOLD_SECONDS" <<'PY' &
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 8080))
server.listen(64)
held = []
for _ in range(3):
    held.append(socket.create_connection(("127.0.0.1", 8080)))
    held.append(server.accept()[0])
while time.monotonic() < deadline:
    for _ in range(5):
        client = socket.create_connection(("127.0.0.1", 8080))
        accepted = server.accept()[0]
        client.close()            # the client closes first: its end goes to TIME_WAIT
        time.sleep(0.01)
        accepted.close()
    time.sleep(min(30, max(0, deadline - time.monotonic())))
PY
                    running[$!]=1
                    echo "$!" >>"$work/idle.loaders"
                fi
            done
            sleep 1
            write_loop "$work/idle.pids" "$work/loop.idle.sh"
            load=$(load_now)
            slab=$(slab_tw)
            loaded=$(( (target + LOADED_EVERY - 1) / LOADED_EVERY ))
            timed "idle$target" "$RUNS" 1 "twscope --netns all" "$ALL_CMD" "shell loop" "bash $work/loop.idle.sh > /dev/null"
            # shellcheck disable=SC2046
            record "idle$target" "load=$load" "slab_tw=$slab" "namespaces=$target" "loaded=$loaded" $(node_facts)
        done
        teardown "$work/idle.ns" "$work/idle.pids" "$work/idle.loaders"
        ;;
    *) log "unknown phase $phase"; exit 1 ;;
    esac
done
echo "load=$(load_now)" >>"$work/machine"

python3 - "$work/results.jsonl" "$work/machine" "$RUNS" "$ROUNDS" "$NODE_NS" >"$work/report.md" <<'PY'
import json, os, platform, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
loads = [l.split("=", 1)[1] for l in open(sys.argv[2]).read().split("\n") if l]
runs, rounds, nodes = sys.argv[3], sys.argv[4], sys.argv[5]
# One row per (phase, command): every run's time, user and sys weighted by runs.
# A run during which TIME_WAIT sockets of the node expired (more than 1% gone)
# timed a smaller node: it is left out, and counted.
rows = {}
for l in lines:
    r = rows.setdefault((l["phase"], l["command"]), {**l, "times": [], "cpu": [], "befores": [], "afters": [], "loads": [], "expired": 0})
    if "before" in l and int(l["after"]) < 0.99 * int(l["before"]):
        r["expired"] += len(l["times"])
        continue
    r["times"] += l["times"]
    r["cpu"].append((len(l["times"]), l["user"], l["system"]))
    r["rss_kib"] = max(r["rss_kib"], l["rss_kib"])
    if "before" in l:
        r["befores"].append(int(l["before"])); r["afters"].append(int(l["after"]))
    r["loads"].append(l["load"].split()[0])
for r in rows.values():
    t = r["times"]
    n = sum(c[0] for c in r["cpu"])
    r.update(mean=statistics.mean(t), sd=statistics.stdev(t) if len(t) > 1 else 0.0, min=min(t), runs=len(t),
             user=sum(c[0] * c[1] for c in r["cpu"]) / n, system=sum(c[0] * c[2] for c in r["cpu"]) / n)
get = lambda phase, command: rows.get((phase, command))
def ms(s):
    return f"{s * 1000:.2f} ms" if s < 0.01 else f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"
def cols(r):
    return (f"{ms(r['mean'])} ± {ms(r['sd']) if r['runs'] > 1 else '—'} | {ms(r['user'])} | {ms(r['system'])} | "
            f"{ms(r['user'] + r['system'])} | {r['rss_kib'] / 1024:.1f} MiB")
def counts(r):
    lo = lambda v: f"{min(v):,}" if min(v) == max(v) else f"{min(v):,}–{max(v):,}"
    return f"{lo(r['befores'])} → {lo(r['afters'])}"
def load(r):
    return min(r["loads"]) if len(set(r["loads"])) == 1 else f"{min(r['loads'], key=float)}–{max(r['loads'], key=float)}"
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")) / 1048576
print(f"Machine: {os.cpu_count()} cores, {mem:.0f} GiB, kernel {platform.release()}, {cpu}. "
      f"Load average (1, 5, 15 min) {loads[0]} at the start, {loads[-1]} at the end. "
      f"hyperfine: {runs} runs per command after 1 warm-up; on the 100-namespace node one run of one "
      f"command per freshly built node, {rounds} nodes (twscope on the odd ones, the shell loop on the even ones).")
print()
idle = [r for k, r in rows.items() if k[0].startswith("idle")]
if idle:
    print("| namespaces (loaded) | found / idle / listed by twscope | command | wall mean ± sd | user | sys | user+sys | max RSS | shell loop ÷ twscope | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in idle:
        loop, tw = get(r["phase"], "shell loop"), get(r["phase"], "twscope --netns all")
        ratio = f"{loop['mean'] / tw['mean']:.1f}×" if r is tw and loop else ""
        print(f"| {int(r['namespaces']):,} ({r['loaded']}) | {r['found']} / {r['idle']} / {r['dumped']} | {r['command']} | {cols(r)} | {ratio} | {load(r)} |")
    print()
big = [r for k, r in rows.items() if k[0] in ("node", "single", "ehash") and not k[1].startswith("empty")]
if big:
    single = get("single", "single-namespace census")
    print("| node | TIME_WAIT before → after | found / listed | command | runs | wall mean ± sd | user | sys | user+sys | max RSS | wall ÷ single census | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in big:
        per = max(r["befores"]) // int(r["namespaces"])
        node = {"node": f"{r['namespaces']} ns × {per:,}", "ehash": f"{r['namespaces']} ns × {per:,}, own ehash",
                "single": f"1 ns × {per:,}"}[r["phase"]]
        ratio = f"{r['mean'] / single['mean']:.2f}×" if single else "—"
        runs = f"{r['runs']} (+{r['expired']} left out: sockets expired)" if r["expired"] else r["runs"]
        print(f"| {node} | {counts(r)} | {r['found']} / {r['dumped']} | {r['command']} | {runs} | {cols(r)} | {ratio} | {load(r)} |")
    print()
empties = [r for k, r in rows.items() if k[1] == "empty namespace"]
if empties:
    print("`twscope status --netns EMPTY --json`, EMPTY a namespace without a socket:")
    print()
    base = get("baseline", "empty namespace")
    print("| phase | TIME_WAIT elsewhere | node's TIME_WAIT (slab) | runs | wall mean ± sd | min | user | sys | wall − nothing elsewhere |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in empties:
        tw = max(r["befores"], default=0)
        where = {"baseline": "none",
                 "node": f"{tw:,} over {r.get('namespaces')} ns",
                 "ehash": f"{tw:,} over {r.get('namespaces')} ns, each with its own ehash",
                 "single": f"{tw:,} in 1 ns", "claim": f"{tw:,} in 1 ns"}[r["phase"]]
        extra = f"+{ms(r['mean'] - base['mean'])}" if base and r is not base else "—"
        runs = f"{r['runs']} (+{r['expired']} left out: sockets expired)" if r["expired"] else r["runs"]
        print(f"| {r['phase']} | {where} | {int(r['slab_tw']):,} | {runs} | {ms(r['mean'])} ± {ms(r['sd'])} | {ms(r['min'])} | {ms(r['user'])} | {ms(r['system'])} | {extra} |")
    print()
if os.path.exists(sys.argv[1].replace("results.jsonl", "probes.jsonl")):
    print("One raw sock_diag dump of TCP sockets, by family and the states asked for, 5 runs:")
    print()
    print("| node | in | family, idiag_states | sockets returned | min | median |")
    print("|---|---|---|---|---|---|")
    for l in open(sys.argv[1].replace("results.jsonl", "probes.jsonl")):
        p = json.loads(l)
        node = {"node": f"{nodes} ns, shared ehash", "ehash": f"{nodes} ns, own ehash"}[p["phase"]]
        print(f"| {node} | {p['where']} | {p['mask']} | {p['sockets']:,} | {ms(p['min'])} | {ms(p['median'])} |")
    print()
PY

{
    echo "### Run of $(date -u +%Y-%m-%dT%H:%MZ) (bench/netns-all.sh)"
    echo
    cat "$work/report.md"
} | tee -a "$OUT"
