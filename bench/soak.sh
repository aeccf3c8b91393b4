#!/usr/bin/env bash
# Soak of `twscope serve` under hostile clients (issue 9): SOAK_SECONDS (30 min)
# at COUNT (250k) TIME_WAIT sockets, held there by a churn of COUNT/60
# connections/s, with SCRAPERS honest scrapers (basic auth, bcrypt cost 10,
# keep-alive, SCRAPE_PAUSE s between scrapes) and a hostile mix: slow-loris
# heads, idle connections, ~400 KB Authorization headers, and wrong-password
# guesses. Records per SAMPLE_SECONDS honest latency, answers and errors, what
# the hostile clients got, and the server's RSS, fds, threads and CPU%.
#
#   sudo bench/soak.sh
#   sudo SOAK_SECONDS=120 COUNT=50000 bench/soak.sh        # a short trial
#
# Needs root, iproute2, python3 (stdlib only). Everything is on loopback,
# bounded by the soak's duration, and cleaned up on exit (processes by PID,
# the namespace). Raw files and the per-period CSV stay in $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

SOAK_SECONDS=${SOAK_SECONDS:-1800}
COUNT=${COUNT:-250000}
SCRAPERS=${SCRAPERS:-50}
SCRAPE_PAUSE=${SCRAPE_PAUSE:-1}
LORIS=${LORIS:-50}
IDLE=${IDLE:-300}
OVERSIZE=${OVERSIZE:-10}
OVERSIZE_PAUSE=${OVERSIZE_PAUSE:-0.1}
GUESSERS=${GUESSERS:-50}
GUESS_PAUSE=${GUESS_PAUSE:-0.1}
BCRYPT_COST=${BCRYPT_COST:-10}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-60}
TABLE_PERIODS=${TABLE_PERIODS:-5}
# TIME_WAIT lasts 60 s: the population is flat at COUNT only once the churn
# has run for 60 s and the fill's sockets have expired.
WARMUP_SECONDS=${WARMUP_SECONDS:-65}
CHURN_THREADS=${CHURN_THREADS:-2}
SERVE_FLAGS=${SERVE_FLAGS:-"--min-interval 1 --web.max-connections 512 --web.idle-timeout 75 --web.header-timeout 10"}
OUT=${OUT:-/tmp/twscope-soak-$(date -u +%Y%m%dT%H%M%SZ)}

[ "$(id -u)" = 0 ] || { echo "soak.sh: run as root (it creates a network namespace)" >&2; exit 1; }
mkdir -p "$OUT"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date -u +%Y-%m-%dT%H:%MZ)
cargo build --release --quiet -p twscope -p twscope-lab
TWSCOPE=$PWD/target/release/twscope
CHURN=$PWD/target/release/twscope-churn
SOAK=$PWD/bench/soak

ns=""
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -n "$ns" ] && ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The web config: one user, a random password, bcrypt cost BCRYPT_COST.
user=prometheus
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
hash=$(python3 -W ignore -c 'import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=2 ** int(sys.argv[2]))))' "$password" "$BCRYPT_COST" 2>/dev/null) ||
    hash=$(htpasswd -nbBC "$BCRYPT_COST" "" "$password" | tr -d ':\n')
case $hash in '$2'?'$'*) ;; *) echo "soak.sh: cannot make a bcrypt hash (python3's crypt or htpasswd)" >&2; exit 1 ;; esac
printf 'basic_auth_users:\n  %s: %s\n' "$user" "$hash" >"$OUT/web.yml"
chmod 600 "$OUT/web.yml"

ns="twscope-soak-$$"
fill_namespace "$ns" "$COUNT" "$CHURN" 2>"$OUT/fill.log"

# The exporter picks a free port and names it on its first stderr line.
# shellcheck disable=SC2086
"$TWSCOPE" serve --listen 127.0.0.1:0 --netns "$ns" --web.config.file "$OUT/web.yml" $SERVE_FLAGS 2>"$OUT/server.log" &
server=$!
pids+=("$server")
port=""
for _ in $(seq 100); do
    port=$(sed -n '1s|^twscope serve: listening on http://127\.0\.0\.1:\([0-9]*\)/metrics.*|\1|p' "$OUT/server.log")
    [ -n "$port" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$port" ] || { echo "soak.sh: the exporter did not say where it listens" >&2; exit 1; }

# The churn that keeps COUNT sockets in TIME_WAIT: COUNT/60 connections/s
# over their own destinations (30,000 each), restarted every ≤ 600 s (the
# churn's own bound) until the soak ends. Its ports are below the ephemeral
# range (1024-65535 here): a port inside it may be the source port of a
# TIME_WAIT socket left by the fill, and then cannot be listened on until
# that socket expires.
rate=$(( (COUNT + 59) / 60 ))
targets=()
for ((i = 0; i < (COUNT + 29999) / 30000; i++)); do targets+=(--target "127.0.0.1:$((600 + i))"); done
[ "${#targets[@]}" -le 800 ] || { echo "soak.sh: COUNT too large for the churn's ports (600-1023)" >&2; exit 1; }
churn_end=$(( $(date +%s) + WARMUP_SECONDS + SOAK_SECONDS + 10 ))
churn_loop() {
    local child="" left seg began
    trap '[ -n "$child" ] && kill "$child" 2>/dev/null; exit 0' TERM
    while left=$(( churn_end - $(date +%s) )); [ "$left" -gt 0 ]; do
        seg=$(( left < 600 ? left : 600 ))
        began=$(date +%s)
        "$CHURN" --netns "$ns" "${targets[@]}" --count $(( rate * seg )) --rate "$rate" \
            --threads "$CHURN_THREADS" --max-seconds "$seg" >>"$OUT/churn.log" 2>&1 &
        child=$!
        wait "$child" || true
        child=""
        # A churn that could not start must not be retried in a tight loop.
        [ $(( $(date +%s) - began )) -ge 5 ] || sleep 1
    done
}
churn_loop &
pids+=($!)

echo "soak.sh: $COUNT TIME_WAIT, exporter on 127.0.0.1:$port (pid $server), churn at $rate/s; warming up ${WARMUP_SECONDS}s; raw files in $OUT" >&2
sleep "$WARMUP_SECONDS"
# Start the clock only once the churn alone holds ~COUNT (≥ 95%), at most 2 min later.
time_wait() { ip netns exec "$ns" ss -Htan state time-wait | wc -l; }
for _ in $(seq 24); do
    [ "$(time_wait)" -ge $(( COUNT * 95 / 100 )) ] && break
    sleep 5
done
tw=$(time_wait)
[ "$tw" -ge $(( COUNT * 95 / 100 )) ] || { echo "soak.sh: only $tw TIME_WAIT sockets after the warm-up (churn log: $OUT/churn.log)" >&2; exit 1; }

# Prometheus authenticated long before the soak: one scrape caches the
# credential, so the honest scrapers' first requests need no bcrypt slot.
curl -fsS -o /dev/null -u "$user:$password" "http://127.0.0.1:$port/metrics"

t0=$(python3 -c 'import time; print(f"{time.time() + 2:.3f}")')
bound=$(( SOAK_SECONDS + 120 ))
timeout "$bound" python3 "$SOAK/sample.py" "$server" "$ns" "$port" "$user" "$password" "$t0" "$SOAK_SECONDS" "$SAMPLE_SECONDS" "$OUT/server.csv" &
sampler=$!
timeout "$bound" python3 "$SOAK/honest.py" "$port" "$user" "$password" "$SCRAPERS" "$SCRAPE_PAUSE" "$t0" "$SOAK_SECONDS" "$OUT/honest.log" &
honest=$!
timeout "$bound" python3 "$SOAK/hostile.py" "$port" "$user" "$LORIS" "$IDLE" "$OVERSIZE" "$GUESSERS" \
    "$OVERSIZE_PAUSE" "$GUESS_PAUSE" "$t0" "$SOAK_SECONDS" "$SAMPLE_SECONDS" "$OUT" &
hostile=$!
pids+=("$sampler" "$honest" "$hostile")
echo "soak.sh: soaking for ${SOAK_SECONDS}s…" >&2
status=0
wait "$honest" || status=$?
wait "$hostile" || status=$?
wait "$sampler" || status=$?
[ "$status" = 0 ] || echo "soak.sh: a client process ended with status $status" >&2
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
if kill -0 "$server" 2>/dev/null; then alive="alive at the end"; else alive="DEAD before the end"; fi

{
    echo "### Run of $started"
    echo
    echo "Machine: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r); shared with other work: load average $load_start at the start, $load_end at the end."
    echo
    echo "Soak: $((SOAK_SECONDS / 60)) min after a ${WARMUP_SECONDS} s warm-up, $COUNT TIME_WAIT sockets held by a churn of $rate connections/s; \`twscope serve $SERVE_FLAGS\` with basic auth (bcrypt cost $BCRYPT_COST), $alive."
    echo "Clients: $SCRAPERS honest scrapers (keep-alive, ${SCRAPE_PAUSE} s pause); $LORIS slow-loris, $IDLE idle, $OVERSIZE oversized-header (${OVERSIZE_PAUSE} s pause), $GUESSERS wrong-password (${GUESS_PAUSE} s pause)."
    echo
    python3 "$SOAK/report.py" "$OUT" "$SAMPLE_SECONDS" "$TABLE_PERIODS" "$SOAK_SECONDS"
} | tee "$OUT/results.md"
echo >&2
echo "soak.sh: per-period CSV in $OUT/periods.csv; fill, churn and server logs beside it" >&2
