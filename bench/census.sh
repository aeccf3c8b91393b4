#!/usr/bin/env bash
# Whole-process cost of a TIME_WAIT census: twscope against ss, in one network
# namespace, in one hyperfine run per population size.
#
#   sudo bench/census.sh                 # 50k, 250k and 1M TIME_WAIT sockets
#   sudo COUNTS="50000" RUNS=5 bench/census.sh
#
# For each size it makes a fresh namespace, churns that many loopback
# connections into client-side TIME_WAIT with twscope-churn (bounded in count
# and time), then times, inside the namespace:
#   twscope status --json --top 0          the full per-destination census
#   ss -Htan state time-wait | wc -l       the bare count
#   the TIME_WAIT post's pipeline               ss … | awk | sort | uniq -c | sort -rn | head
# TIME_WAIT lasts 60 s, so each size is measured right after it is built; the
# TIME_WAIT count before and after the timings is recorded with the results.
# Needs root, iproute2, hyperfine and GNU time. Cleans up its namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

COUNTS=${COUNTS:-"50000 250000 1000000"}
RUNS=${RUNS:-5}
OUT=${OUT:-bench/results.md}

for tool in ip ss hyperfine /usr/bin/time python3; do
    command -v "$tool" >/dev/null || { echo "census.sh: $tool is missing (apt-get install iproute2 hyperfine time python3)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "census.sh: run as root (it creates network namespaces)" >&2; exit 1; }

cargo build --release --quiet -p twscope -p twscope-lab
TWSCOPE=$PWD/target/release/twscope
CHURN=$PWD/target/release/twscope-churn
work=$(mktemp -d)
ns=""
cleanup() {
    [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

tw_now() { ip netns exec "$ns" awk '/^TCP:/ { for (i = 2; i < NF; i += 2) if ($i == "tw") print $(i + 1) }' /proc/net/sockstat; }

{
    echo "### Run of $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')."
    echo "hyperfine $(hyperfine --version | cut -d' ' -f2), $RUNS runs per command after 1 warm-up, inside the namespace."
    echo
    echo "| TIME_WAIT (before → after) | command | wall mean ± sd | user | sys | user+sys | max RSS | wall vs \`ss \| wc -l\` | wall vs post's pipeline |"
    echo "|---|---|---|---|---|---|---|---|---|"
} >"$work/table.md"

for count in $COUNTS; do
    ns="twscope-bench-$$-$count"
    fill_namespace "$ns" "$count" "$CHURN"
    before=$(tw_now)

    ip netns exec "$ns" hyperfine --warmup 1 --runs "$RUNS" --style none --export-json "$work/$count.json" \
        -n twscope "$TWSCOPE status --json --top 0 > /dev/null; [ \$? -le 2 ]" \
        -n "ss | wc -l" "ss -Htan state time-wait | wc -l" \
        -n "post's pipeline" "ss -tan state time-wait | awk '{print \$4}' | sort | uniq -c | sort -rn | head" >&2
    after=$(tw_now)
    rss_twscope=$(ip netns exec "$ns" /usr/bin/time -f %M "$TWSCOPE" status --json --top 0 2>&1 >/dev/null | tail -1 || true)
    rss_ss=$(ip netns exec "$ns" /usr/bin/time -f %M ss -Htan state time-wait 2>&1 >/dev/null | tail -1)

    python3 - "$work/$count.json" "$before" "$after" "$rss_twscope" "$rss_ss" >>"$work/table.md" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
before, after, rss_tw, rss_ss = (int(x) for x in sys.argv[2:6])
bare = results["ss | wc -l"]["mean"]
seed = results["post's pipeline"]["mean"]
rss = {"twscope": f"{rss_tw / 1024:.1f} MiB", "ss | wc -l": f"{rss_ss / 1024:.1f} MiB (ss)", "post's pipeline": "—"}
for name in ("twscope", "ss | wc -l", "post's pipeline"):
    r = results[name]
    cmd = name.replace("|", "\\|")
    print(f"| {before:,} → {after:,} | {cmd} | {r['mean']:.3f} ± {r['stddev']:.3f} s | {r['user']:.3f} s | "
          f"{r['system']:.3f} s | {r['user'] + r['system']:.3f} s | {rss[name]} | "
          f"{r['mean'] / bare:.2f}× | {r['mean'] / seed:.2f}× |")
PY
    ip netns del "$ns"
    ns=""
done

cat "$work/table.md" | tee -a "$OUT"
echo >>"$OUT"
