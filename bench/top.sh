#!/usr/bin/env bash
# What `twscope top` costs while it watches 1M TIME_WAIT sockets (issue 13):
# its whole process's CPU share of one core and its memory over a soak, beside
# the plain census (`twscope status`) and `ss -tan | wc -l` at the same load.
#
#   sudo bench/top.sh                    # 600 s soak at 1,000,000 TIME_WAIT
#   sudo DURATION=90 bench/top.sh        # a short trial (or: bench/top.sh 90)
#
# It makes one namespace (`fill_namespace` of bench/lib.sh sets it up and
# seeds it) and keeps COUNT client TIME_WAIT sockets in it with a
# twscope-churn of COUNT/60 connections/s (TIME_WAIT lasts 60 s) over its own
# loopback destinations, 30,000 each, restarted every ≤ 600 s (the churn's own
# bound) until the measurement ends. Once the churn alone holds ≥ 95% of
# COUNT, in order:
#
#   before  RUNS × `twscope status --netns NS` and SS_RUNS × `ss -tan | wc -l`
#           inside the namespace, under GNU time (wall, user, sys, max RSS)
#   soak    `twscope top --netns NS --interval INTERVAL` in a detached tmux
#           server of its own (COLS × ROWS), sampled every STEP s for DURATION
#           s: utime+stime (/proc/PID/stat), VmRSS and VmHWM (/proc/PID/status),
#           the namespace's TIME_WAIT count (/proc/net/sockstat "tw"), the
#           machine's busy CPU and the churn's (/proc/stat), the load average,
#           and top's header (tmux capture-pane). The header is also read
#           every POLL s: each change of it is one refresh, counted with top's
#           CPU ticks then, and its "census N sockets: W ms, C ms CPU" kept
#           when the pane's width shows it
#   stop    `q` sent to top; its exit status (or signal) is recorded
#   after   the census runs again
#
# Top's CPU is its whole process (the collection thread, the UI thread's
# drawing and key polling, threads that have ended), from /proc/PID/stat.
#
# The churn is the load generator, not what is measured, and on a 2-core
# machine it needs most of both cores (≈ 70 µs of CPU per loopback
# connection, both ends and their softirqs). It runs in a scheduling group of
# its own (a new session: its own autogroup) at CHURN_NICE (5), so that top
# gets the CPU it asks for: at CHURN_NICE=0 top's collection thread waits
# seconds on the run queue for each census and its share of a core says more
# about the churn than about top; at 10 the churn falls far behind whenever
# other work runs on the machine. The TIME_WAIT count is sampled throughout:
# what the churn held is in the report.
#
# Needs root, iproute2, tmux, GNU time, python3. Traffic is on loopback inside
# the namespace only; every loop is bounded in count and time; the namespace,
# the tmux server, top, the churn and the sampler are removed (processes by
# PID) on exit, Ctrl-C included. Raw files and the report stay in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

DURATION=${1:-${DURATION:-600}}
COUNT=${COUNT:-1000000}
INTERVAL=${INTERVAL:-2}
STEP=${STEP:-10}
POLL=${POLL:-0.5}
RUNS=${RUNS:-5}
SS_RUNS=${SS_RUNS:-3}
COLS=${COLS:-132}
ROWS=${ROWS:-40}
CHURN_THREADS=${CHURN_THREADS:-2}
CHURN_NICE=${CHURN_NICE:-5}
SEED=${SEED:-30000}
OUT=${OUT:-/tmp/twscope-top-$(date -u +%Y%m%dT%H%M%SZ)}

for tool in ip ss tmux setsid /usr/bin/time python3; do
    command -v "$tool" >/dev/null || { echo "top.sh: $tool is missing (apt-get install iproute2 tmux util-linux time python3)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "top.sh: run as root (it creates a network namespace)" >&2; exit 1; }
[ "$DURATION" -ge "$STEP" ] || { echo "top.sh: DURATION ($DURATION) must be at least STEP ($STEP)" >&2; exit 1; }
mkdir -p "$OUT"
started=$(date -u +%Y-%m-%dT%H:%MZ)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

cargo build --release --quiet -p twscope -p twscope-lab --bins
TWSCOPE=$PWD/target/release/twscope
CHURN=$PWD/target/release/twscope-churn
build="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty=$(git status --porcelain -- crates bpf 2>/dev/null | awk '{print $2}' | paste -sd' ' || true)

ns=""
pids=()
tmux_sock="twscope-bench-$$"
tmux_pid=""
tmux_path=""
top=""
top_alive() { [ -n "$top" ] && [ -d "/proc/$top" ] && [ "$(cat "/proc/$top/comm" 2>/dev/null)" = twscope ]; }
cleanup() {
    local pid _
    if top_alive; then
        # SIGTERM first, while its terminal is still there; it ends once the
        # census under way has (seconds on a loaded machine).
        kill "$top" 2>/dev/null || true
        for _ in $(seq 200); do top_alive || break; sleep 0.1; done
        if top_alive; then
            echo "top.sh: twscope top (pid $top) still running 20 s after SIGTERM; SIGKILL" >&2
            kill -KILL "$top" 2>/dev/null || true
        fi
    fi
    if [ -n "$tmux_pid" ]; then
        tmux -L "$tmux_sock" kill-server 2>/dev/null || true
        kill "$tmux_pid" 2>/dev/null || true
        [ -n "$tmux_path" ] && rm -f "$tmux_path"
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tw_now() { ip netns exec "$ns" awk '/^TCP:/ { for (i = 2; i < NF; i += 2) if ($i == "tw") print $(i + 1) }' /proc/net/sockstat; }

# The namespace, set up as every bench sets it up (ports 1024-65535, no
# tw_reuse, room for 4M TIME_WAIT), with a seed of SEED sockets that expires
# during the warm-up.
ns="twscope-top-$$"
fill_namespace "$ns" "$SEED" "$CHURN" 2>"$OUT/fill.log"

# The churn that keeps COUNT sockets in TIME_WAIT: COUNT/60 connections/s over
# its own destinations (30,000 each), below the ephemeral range so that no
# TIME_WAIT socket can hold their port. Bounded: each process by its count
# and --max-seconds, the loop by churn_end.
rate=$(( (COUNT + 59) / 60 ))
targets=()
for ((i = 0; i < (COUNT + 29999) / 30000; i++)); do targets+=(--target "127.0.0.1:$((600 + i))"); done
[ $(( ${#targets[@]} / 2 )) -le 400 ] || { echo "top.sh: COUNT too large for the churn's ports (600-999)" >&2; exit 1; }
# Long enough for the warm-up, three waits for the count (≤ 2 min each), the
# census runs twice, top's start and stop, and the soak; ended by cleanup.
churn_end=$(( $(date +%s) + 62 + 3 * 120 + 2 * (RUNS * 10 + SS_RUNS * 20) + 60 + DURATION ))
churn_loop() {
    local child="" left seg began
    trap '[ -n "$child" ] && kill "$child" 2>/dev/null; exit 0' TERM
    while left=$(( churn_end - $(date +%s) )); [ "$left" -gt 0 ]; do
        seg=$(( left < 600 ? left : 600 ))
        began=$(date +%s)
        # setsid execs the churn in a new session (it is no group leader
        # here), so $! is the churn and its autogroup is its own.
        setsid "$CHURN" --netns "$ns" "${targets[@]}" --count $(( rate * seg )) --rate "$rate" \
            --threads "$CHURN_THREADS" --max-seconds "$seg" >>"$OUT/churn.log" 2>&1 &
        child=$!
        # Its own session first (field 6 of stat), or the nice would be the
        # script's autogroup's.
        for _ in $(seq 50); do
            [ "$(awk '{print $6}' "/proc/$child/stat" 2>/dev/null)" = "$child" ] && break
            sleep 0.02
        done
        if [ "$(awk '{print $6}' "/proc/$child/stat" 2>/dev/null)" = "$child" ]; then
            echo "$CHURN_NICE" >"/proc/$child/autogroup" 2>/dev/null ||
                echo "top.sh: could not set the churn's autogroup nice (kernel.sched_autogroup_enabled?)" >>"$OUT/churn.log"
        fi
        wait "$child" || true
        child=""
        # A churn that could not start must not be retried in a tight loop.
        [ $(( $(date +%s) - began )) -ge 5 ] || sleep 1
    done
}
churn_loop &
churn_loop_pid=$!
pids+=("$churn_loop_pid")

echo "top.sh: churning $rate connections/s over $(( ${#targets[@]} / 2 )) destinations in $ns; warming up (≥ 62 s); raw files in $OUT" >&2
sleep 62

# RUNS plain censuses and SS_RUNS `ss -tan | wc -l`, with the TIME_WAIT count
# before and after; lines "PHASE what wall user sys maxrss_kb" in census.txt.
census_runs() {
    local phase=$1 rc lines _
    echo "$phase tw_before $(tw_now)" >>"$OUT/census.txt"
    for _ in $(seq "$RUNS"); do
        rc=0
        /usr/bin/time -f "$phase status %e %U %S %M" -a -o "$OUT/census.txt" \
            "$TWSCOPE" status --netns "$ns" >/dev/null 2>>"$OUT/status.err" || rc=$?
        [ "$rc" -le 2 ] || { echo "top.sh: twscope status exited $rc" >&2; cat "$OUT/status.err" >&2; exit 1; }
    done
    for _ in $(seq "$SS_RUNS"); do
        lines=$( { /usr/bin/time -f "$phase ss %e %U %S %M" -a -o "$OUT/census.txt" ip netns exec "$ns" ss -tan || true; } | wc -l)
        echo "$phase ss_lines $lines" >>"$OUT/census.txt"
    done
    echo "$phase tw_after $(tw_now)" >>"$OUT/census.txt"
}
# Waits (at most 2 min) until the churn holds ≥ 95% of COUNT again.
wait_for_count() {
    local _
    for _ in $(seq 24); do
        [ "$(tw_now)" -ge $(( COUNT * 95 / 100 )) ] && return 0
        sleep 5
    done
    echo "top.sh: only $(tw_now) TIME_WAIT sockets (churn log: $OUT/churn.log)" >&2
    return 1
}
wait_for_count
tw=$(tw_now)
echo "top.sh: $tw TIME_WAIT; $RUNS × twscope status, $SS_RUNS × ss -tan | wc -l (before)" >&2
census_runs before
# The census runs (ss above all) take CPU from the churn; the soak starts at COUNT.
wait_for_count

# top, in a tmux server of its own; its pane stays (remain-on-exit) if it dies,
# so that the last screen can be read.
tmux -L "$tmux_sock" -f /dev/null set-option -g remain-on-exit on \; set-option -g status off \; \
    new-session -d -s top -x "$COLS" -y "$ROWS" "exec '$TWSCOPE' top --netns '$ns' --interval $INTERVAL"
tmux_pid=$(tmux -L "$tmux_sock" display-message -p '#{pid}')
tmux_path=$(tmux -L "$tmux_sock" display-message -p '#{socket_path}')
top=$(tmux -L "$tmux_sock" list-panes -t top -F '#{pane_pid}')
# The pane's shell execs twscope: wait (≤ 10 s) for it, or for the pane to die.
for _ in $(seq 100); do
    top_alive && break
    [ "$(tmux -L "$tmux_sock" list-panes -t top -F '#{pane_dead}')" = 1 ] && break
    sleep 0.1
done
top_alive || { tmux -L "$tmux_sock" capture-pane -p -t top >&2 || true; echo "top.sh: twscope top did not start" >&2; exit 1; }
# The clock starts at the first census on screen (at most 30 s).
for _ in $(seq 60); do
    tmux -L "$tmux_sock" capture-pane -p -t top | grep -q 'census [0-9,]* sockets' && break
    top_alive || break
    sleep 0.5
done
tmux -L "$tmux_sock" capture-pane -p -t top >"$OUT/screen-start.txt"
if ! top_alive || ! grep -q 'census [0-9,]* sockets' "$OUT/screen-start.txt"; then
    cat "$OUT/screen-start.txt" >&2
    echo "top.sh: no census on top's screen after 30 s" >&2
    exit 1
fi

echo "top.sh: twscope top (pid $top) in tmux -L $tmux_sock; sampling every ${STEP}s for ${DURATION}s…" >&2
timeout $(( DURATION + 60 )) python3 - "$top" "$ns" "$tmux_sock" "$DURATION" "$STEP" "$POLL" "$OUT" "$churn_loop_pid" <<'PY' &
# The sampler: every STEP s a row of samples.csv; every POLL s top's screen.
# A refresh is a change of the header's first four lines (the census line may
# be clipped at the pane's width, so its numbers are read when they are
# there): one row of refreshes.csv each, with top's CPU ticks at the time.
# Exits 2 if top dies.
import os, re, subprocess, sys, time

top, ns, sock, duration, step, poll, out, churn_loop = sys.argv[1:9]
top, duration, step, poll, churn_loop = int(top), int(duration), int(step), float(poll), int(churn_loop)
# "census N sockets: W ms, C ms CPU, P% of a core[, capped]", maybe clipped.
CENSUS = re.compile(r"census ([\d,]+) sockets(?::| in)(?: (\d+) ms(?:, (\d+) ms(?: CPU,? \(?(\d+)% of a core(, capped)?)?)?)?")
EVERY = re.compile(r"every ([\d.]+) s(?:, not ([\d.]+))?")


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), int(fields[1])  # utime+stime, ppid


def vm(pid):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                values[key] = int(rest.split()[0])
    return values


def machine_busy():
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    return sum(cpu) - cpu[3] - cpu[4]  # all but idle and iowait, in ticks


churn_seen = {}  # pid -> ticks last seen, so that a restarted churn adds up


def churn_ticks():
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ticks, ppid = stat(entry)
            except (OSError, IndexError, ValueError):
                continue
            if ppid == churn_loop:
                churn_seen[int(entry)] = ticks
    return sum(churn_seen.values())


def tw():
    text = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/sockstat"],
                          capture_output=True, text=True).stdout
    for line in text.splitlines():
        if line.startswith("TCP:"):
            f = line.split()
            return int(f[f.index("tw") + 1])
    return -1


def screen():
    return subprocess.run(["tmux", "-L", sock, "capture-pane", "-p", "-t", "top"],
                          capture_output=True, text=True).stdout


def alive():
    try:
        with open(f"/proc/{top}/comm") as f:
            return f.read().strip() == "twscope"
    except OSError:
        return False


def csv_text(text):
    return '"' + text.replace('"', "'") + '"'


samples = open(f"{out}/samples.csv", "w")
samples.write("t_s,top_ticks,rss_kb,hwm_kb,threads,tw,machine_ticks,churn_ticks,load1,every_s,header\n")
refreshes = open(f"{out}/refreshes.csv", "w")
refreshes.write("t_s,top_ticks,sockets,wall_ms,cpu_ms,share_pct,capped,every_s,not_s,footer\n")
t0 = time.monotonic()
last = None
n = 0
next_sample = t0
while n <= duration // step:
    if not alive():
        with open(f"{out}/screen-dead.txt", "w") as f:
            f.write(screen())
        print(f"top.sh: twscope top (pid {top}) ended during the soak; its last screen is in {out}/screen-dead.txt", file=sys.stderr)
        sys.exit(2)
    lines = screen().splitlines()
    now = time.monotonic() - t0
    head = lines[:4]
    census_line = next((l for l in head if CENSUS.search(l)), "")
    m = CENSUS.search(census_line)
    e = next((EVERY.search(l) for l in head[:1] if EVERY.search(l)), None)
    every_s, not_s = (e.group(1), e.group(2) or "") if e else ("", "")
    if head != last:
        last = head
        footer = lines[-2].strip() if len(lines) > 1 and "refresh failed" in lines[-2] else ""
        g = m.groups() if m else (None,) * 5
        refreshes.write(f"{now:.2f},{stat(top)[0]},{(g[0] or '').replace(',', '')},{g[1] or ''},{g[2] or ''},"
                        f"{g[3] or ''},{1 if g[4] else ''},{every_s},{not_s},{csv_text(footer)}\n")
        refreshes.flush()
    if time.monotonic() >= next_sample:
        t = time.monotonic() - t0
        ticks, _ = stat(top)
        v = vm(top)
        with open("/proc/loadavg") as f:
            load1 = f.read().split()[0]
        samples.write(f"{t:.2f},{ticks},{v['VmRSS']},{v['VmHWM']},{v['Threads']},{tw()},{machine_busy()},"
                      f"{churn_ticks()},{load1},{every_s},{csv_text(' | '.join(l.strip() for l in head))}\n")
        samples.flush()
        n += 1
        next_sample = t0 + n * step
        if n == 1 or n % 6 == 0:
            shown = census_line or next((l for l in head if l.startswith("TCP ")), "")
            print(f"top.sh: {int(t)} s: {shown.strip()[:120]}", file=sys.stderr)
    time.sleep(max(0.0, min(poll, next_sample - time.monotonic())))
with open(f"{out}/screen-end.txt", "w") as f:
    f.write(screen())
PY
sampler=$!
pids+=("$sampler")
status=0
wait "$sampler" || status=$?
if [ "$status" != 0 ]; then
    [ -f "$OUT/screen-dead.txt" ] && cat "$OUT/screen-dead.txt" >&2
    echo "top.sh: the sampler ended with status $status; raw files in $OUT" >&2
    exit 1
fi

# `q`, as a person ends it; its exit status or signal from tmux
# (remain-on-exit), once tmux has reaped it (the pane dies when the pty
# closes, a moment before), and the pane's last screen.
tmux -L "$tmux_sock" send-keys -t top q
top_exit="did not exit within 30 s of q"
for _ in $(seq 300); do
    ended=$(tmux -L "$tmux_sock" list-panes -t top -F '#{pane_dead}:#{pane_dead_status}:#{pane_dead_signal}')
    case $ended in
        1:?*:*) top_exit="exit status ${ended#1:}"; top_exit="${top_exit%%:*} after q"; top=""; break ;;
        1:*:?*) top_exit="killed by signal ${ended##*:} after q"; top=""; break ;;
    esac
    sleep 0.1
done
tmux -L "$tmux_sock" capture-pane -p -t top >"$OUT/screen-after-q.txt" || true
echo "top.sh: twscope top: $top_exit; $RUNS × twscope status, $SS_RUNS × ss -tan | wc -l (after)" >&2
census_runs after
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

{
    echo "### Run of $started"
    echo
    echo "Machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r); load average $load_start at the start, $load_end at the end."
    echo "Build: release, $build${dirty:+ with uncommitted changes to $dirty}."
    echo
    echo "Load: $COUNT TIME_WAIT sockets held by a churn of $rate connections/s ($CHURN_THREADS threads, $(( ${#targets[@]} / 2 )) loopback destinations, its own autogroup at nice $CHURN_NICE); \`twscope top --netns NS --interval $INTERVAL\` in a ${COLS}×${ROWS} tmux pane for $DURATION s, sampled every $STEP s; top: $top_exit."
    echo
    python3 - "$OUT" "$INTERVAL" "$DURATION" "$STEP" <<'PY'
import csv, os, statistics, sys
out, interval, duration, step = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
CLK = float(os.sysconf("SC_CLK_TCK"))
rows = list(csv.DictReader(open(f"{out}/samples.csv")))
refs = list(csv.DictReader(open(f"{out}/refreshes.csv")))
t = [float(r["t_s"]) for r in rows]
ticks = [int(r["top_ticks"]) for r in rows]
rss = [int(r["rss_kb"]) / 1024 for r in rows]
hwm = [int(r["hwm_kb"]) / 1024 for r in rows]
tw = [int(r["tw"]) for r in rows]
mach = [int(r["machine_ticks"]) for r in rows]
churn = [int(r["churn_ticks"]) for r in rows]
load = [float(r["load1"]) for r in rows]
span = t[-1] - t[0]
steps = [(ticks[i] - ticks[i - 1]) / CLK / (t[i] - t[i - 1]) for i in range(1, len(rows))]
whole = (ticks[-1] - ticks[0]) / CLK / span
cpu_s = (ticks[-1] - ticks[0]) / CLK
# Refreshes after the first sample (the first census is on screen at t = 0).
refs_in = [r for r in refs if t[0] < float(r["t_s"]) <= t[-1]]
nref = len(refs_in)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def nums(rs, key):
    return [float(r[key]) for r in rs if r[key]]


def census(phase, what):
    found = []
    for line in open(f"{out}/census.txt"):
        f = line.split()
        if len(f) == 6 and f[0] == phase and f[1] == what:
            found.append([float(x) for x in f[2:]])
    return found


def extra(phase, key):
    return [int(l.split()[2]) for l in open(f"{out}/census.txt") if l.split()[:2] == [phase, key]]


def mib(x):
    return f"{x:.1f} MiB"


def span_text(values, unit=""):
    values = sorted(set(values), key=float)
    if not values:
        return "—"
    return (values[0] if len(values) == 1 else f"{values[0]}–{values[-1]}") + unit


print("| minutes | top CPU (of one core) | 10-s steps min–max | refreshes | census CPU, median (header) | census wall, median (header) | header: every | RSS at end | TIME_WAIT min–max | machine busy | churn | load (1 min) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
per_minute = []
for minute in range(int((span - 0.5) // 60) + 1):
    # Step i (from sample i-1 to i) is in minute m if it ends in (60m, 60m + 60].
    a, b = 60 * minute, 60 * minute + 60
    idx = [i for i in range(1, len(rows)) if int((t[i] - t[0] - 0.5) // 60) == minute]
    if not idx:
        continue
    i0, i1 = idx[0] - 1, idx[-1]
    w = t[i1] - t[i0]
    share = (ticks[i1] - ticks[i0]) / CLK / w
    if w >= 59:
        per_minute.append(share)
    st = steps[idx[0] - 1:idx[-1]]
    rr = [r for r in refs if t[i0] < float(r["t_s"]) <= t[i1]]
    end = f"{b // 60}" if w >= 59 else f"{(t[i1] - t[0]) / 60:.1f}"
    print(f"| {a // 60}–{end} | {share:.1%} | {min(st):.1%}–{max(st):.1%} | {len(rr)} | "
          f"{med(nums(rr, 'cpu_ms')):.0f} ms | {med(nums(rr, 'wall_ms')):.0f} ms | {span_text([r['every_s'] for r in rr if r['every_s']], ' s')} | "
          f"{mib(rss[i1])} | {min(tw[i0:i1 + 1]):,}–{max(tw[i0:i1 + 1]):,} | {(mach[i1] - mach[i0]) / CLK / w:.2f} cores | "
          f"{(churn[i1] - churn[i0]) / CLK / w:.2f} cores | {min(load[i0:i1 + 1]):.2f}–{max(load[i0:i1 + 1]):.2f} |")
print()

cw, ww = nums(refs_in, "cpu_ms"), nums(refs_in, "wall_ms")
socks = [int(r["sockets"]) for r in refs_in if r["sockets"]]
rt = [float(r["t_s"]) for r in refs_in]
rticks = [int(r["top_ticks"]) for r in refs_in]
gaps = [b - a for a, b in zip(rt, rt[1:])]
per = [(b - a) / CLK for a, b in zip(rticks, rticks[1:])]
capped = sum(1 for r in refs_in if r["capped"])
stretched = sum(1 for r in refs_in if r["not_s"])
failed = sum(1 for r in refs_in if r["footer"])
mean_interval = (rt[-1] - rt[0]) / (len(rt) - 1) if len(rt) > 1 else float("nan")
per_refresh = cpu_s / nref if nref else float("nan")
print("| measure | value |")
print("|---|---|")
print(f"| top's CPU over the soak (utime+stime of the whole process) | **{whole:.1%} of one core** ({cpu_s:.2f} s in {span:.0f} s) |")
print(f"| per 10-s step, min–max | {min(steps):.1%}–{max(steps):.1%} (a step holds 3–5 refreshes) |")
if per_minute:
    print(f"| per minute, min–max | {min(per_minute):.1%}–{max(per_minute):.1%} |")
print(f"| refreshes on screen | {nref}: one every {mean_interval:.2f} s on average (min {min(gaps):.1f}, max {max(gaps):.1f} s, read every 0.5 s); "
      f"header \"every {span_text([r['every_s'] for r in refs_in if r['every_s']])} s\" for {interval:g} s asked, stretched (\"not {interval:g}\") on {stretched}; {failed} failed |")
if cw:
    print(f"| one census, by top's header ({len(cw)} of {nref} readable at the pane's width) | CPU median {med(cw):.0f} ms (min {min(cw):.0f}, max {max(cw):.0f}); wall median {med(ww):.0f} ms (max {max(ww):.0f}) |")
print(f"| top's CPU per refresh, whole process | {per_refresh * 1000:.0f} ms on average; between two refreshes on screen median {med(per) * 1000:.0f} ms (max {max(per) * 1000:.0f}) |" if per else
      f"| top's CPU per refresh, whole process | {per_refresh * 1000:.0f} ms |")
allst = census("before", "status") + census("after", "status")
for phase in ("before", "after"):
    st = census(phase, "status")
    if st:
        print(f"| `twscope status --netns NS`, {phase} top ({len(st)} runs) | wall {statistics.mean(r[0] for r in st):.3f} s, user {statistics.mean(r[1] for r in st):.3f} s, "
              f"sys {statistics.mean(r[2] for r in st):.3f} s, user+sys {statistics.mean(r[1] + r[2] for r in st):.3f} s "
              f"({min(r[1] + r[2] for r in st):.2f}–{max(r[1] + r[2] for r in st):.2f}), max RSS {max(r[3] for r in st) / 1024:.1f} MiB |")
for phase in ("before", "after"):
    ss = census(phase, "ss")
    if ss:
        print(f"| `ss -tan \\| wc -l`, {phase} top ({len(ss)} runs, {min(extra(phase, 'ss_lines')):,}–{max(extra(phase, 'ss_lines')):,} lines) | wall {statistics.mean(r[0] for r in ss):.3f} s, "
              f"user {statistics.mean(r[1] for r in ss):.3f} s, sys {statistics.mean(r[2] for r in ss):.3f} s, user+sys {statistics.mean(r[1] + r[2] for r in ss):.3f} s |")
if allst:
    census_cpu = statistics.mean(r[1] + r[2] for r in allst)
    print(f"| top's CPU per refresh ÷ one `twscope status` (user+sys, all {len(allst)} runs) | **{per_refresh / census_cpu:.2f}×** ({per_refresh:.3f} s vs {census_cpu:.3f} s) |")
five = next((i for i in range(len(t)) if t[i] - t[0] >= 300 - 0.5), None)
late = f"; from 5 min (the history's span) to the end {rss[five]:.2f} → {rss[-1]:.2f} MiB ({rss[-1] - rss[five]:+.2f})" if five is not None and five < len(t) - 1 else ""
print(f"| RSS first / last / max | {rss[0]:.2f} / {rss[-1]:.2f} / {max(rss):.2f} MiB (last − first {rss[-1] - rss[0]:+.2f} MiB{late}); VmHWM at the end {mib(hwm[-1])} |")
print(f"| TIME_WAIT in the namespace (sockstat), min–max | {min(tw):,}–{max(tw):,}; median {med(tw):,.0f}" +
      (f" (top's census: {min(socks):,}–{max(socks):,} sockets)" if socks else "") + " |")
tb = extra("before", "tw_before") + extra("before", "tw_after")
ta = extra("after", "tw_before") + extra("after", "tw_after")
print(f"| TIME_WAIT around the census runs | before top {min(tb):,}–{max(tb):,}; after {min(ta):,}–{max(ta):,} |")
print(f"| machine during the soak | busy {(mach[-1] - mach[0]) / CLK / span:.2f} of {os.cpu_count()} cores on average, of which the churn {(churn[-1] - churn[0]) / CLK / span:.2f} and top {whole:.2f}; load (1 min) {min(load):.2f}–{max(load):.2f} |")
print()
print(f"- **≤ 25% of one core:** {'met' if whole <= 0.25 else 'NOT met'} — {whole:.1%} over {span:.0f} s (per minute {min(per_minute):.1%}–{max(per_minute):.1%})." if per_minute else
      f"- **≤ 25% of one core:** {'met' if whole <= 0.25 else 'NOT met'} — {whole:.1%} over {span:.0f} s.")
print(f"- **Memory flat:** {'yes' if rss[-1] - rss[0] < 1.0 else 'NO'} by last − first < 1 MiB — RSS {rss[0]:.2f} → {rss[-1]:.2f} MiB (max {max(rss):.2f}) over {span:.0f} s.")
PY
} | tee "$OUT/report.md"
echo >&2
echo "top.sh: report in $OUT/report.md; samples.csv, refreshes.csv, census.txt, screens and the churn log beside it" >&2
