#!/usr/bin/env bash
# Scrape load on `twscope serve`: 50 concurrent scrapers for a bounded time at
# 50k, 250k and 1M TIME_WAIT sockets. Records scrape latency, answers and
# errors, kernel dumps made (one per --min-interval at most), and the
# exporter's RSS at the start and the end (flat = nothing kept per socket).
#
#   sudo bench/serve.sh
#   sudo COUNTS="250000" SCRAPERS=50 SECONDS_PER_RUN=20 bench/serve.sh
#
# Needs root, iproute2, python3. Cleans up its namespace and processes.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

COUNTS=${COUNTS:-"50000 250000 1000000"}
SCRAPERS=${SCRAPERS:-50}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
MIN_INTERVAL=${MIN_INTERVAL:-1}

[ "$(id -u)" = 0 ] || { echo "serve.sh: run as root (it creates network namespaces)" >&2; exit 1; }
cargo build --release --quiet -p twscope -p twscope-lab
TWSCOPE=$PWD/target/release/twscope
CHURN=$PWD/target/release/twscope-churn
ns=""
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "### Run of $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r). $SCRAPERS concurrent scrapers for $SECONDS_PER_RUN s per size, \`twscope serve --min-interval $MIN_INTERVAL\`."
echo
echo "| TIME_WAIT | scrapes answered | errors | latency p50 | p99 | max | dumps | RSS start → end |"
echo "|---|---|---|---|---|---|---|---|"
for count in $COUNTS; do
    ns="twscope-serve-bench-$$"
    fill_namespace "$ns" "$count" "$CHURN"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$TWSCOPE" serve --netns "$ns" --listen "127.0.0.1:$port" --min-interval "$MIN_INTERVAL" 2>/dev/null &
    server=$!
    sleep 0.5
    rss_start=$(awk '/VmRSS/ {print $2}' /proc/$server/status)
    python3 - "$port" "$SCRAPERS" "$SECONDS_PER_RUN" "$count" "$server" "$rss_start" <<'PY'
import sys, threading, time, urllib.request
port, scrapers, seconds, count, pid, rss_start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
url = f"http://127.0.0.1:{port}/metrics"
latencies, errors, lock = [], [0], threading.Lock()
deadline = time.monotonic() + seconds
def scrape():
    while time.monotonic() < deadline:
        start = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                r.read()
                ok = r.status == 200
        except Exception:
            ok = False
        with lock:
            if ok: latencies.append(time.monotonic() - start)
            else: errors[0] += 1
threads = [threading.Thread(target=scrape) for _ in range(scrapers)]
for t in threads: t.start()
for t in threads: t.join()
body = urllib.request.urlopen(url).read().decode()
dumps = next(int(float(l.split()[-1])) for l in body.splitlines() if l.startswith("twscope_dumps_total"))
rss_end = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS"))
latencies.sort()
q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
print(f"| {count:,} | {len(latencies):,} | {errors[0]} | {q(0.5):.0f} ms | {q(0.99):.0f} ms | {latencies[-1]*1000:.0f} ms | {dumps} in {seconds:.0f} s | {rss_start/1024:.1f} → {rss_end/1024:.1f} MiB |")
PY
    kill "$server"; wait "$server" 2>/dev/null || true; server=""
    ip netns del "$ns"; ns=""
done
