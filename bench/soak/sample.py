#!/usr/bin/env python3
"""Samples the exporter once per period for bench/soak.sh, from T0 to the
deadline: VmRSS, open fds, threads, CPU% over the period (utime+stime from
/proc/PID/stat), the namespace's TIME_WAIT count by `ss` and as the exporter
reports it, the exporter's own protection counters, and the load average.

  sample.py PID NETNS PORT USER PASSWORD T0 SECONDS PERIOD OUT
"""
import base64
import http.client
import os
import subprocess
import sys
import time

pid, netns, port, user, password = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
t0, seconds, period, out_path = float(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8]), sys.argv[9]
TICK = os.sysconf("SC_CLK_TCK")
auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
COUNTERS = {
    'twscope_sockets{state="TIME_WAIT"}': "tw_exporter",
    "twscope_dumps_total": "dumps",
    "twscope_scrape_errors_total": "dump_errors",
    "twscope_exporter_connections_evicted_total": "evicted",
    "twscope_exporter_connections_refused_total": "refused",
    "twscope_exporter_connections_timed_out_total": "timed_out",
    "twscope_exporter_auth_throttled_total": "throttled",
}
FIELDS = ["period", "t", "rss_kib", "fds", "threads", "cpu_pct", "tw_ss", "tw_exporter", "dumps", "dump_errors",
          "evicted", "refused", "timed_out", "throttled", "load1", "load5", "load15"]


def cpu_ticks():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def status():
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                out[key] = int(value.split()[0])
    return out


def exporter():
    values = dict.fromkeys(COUNTERS.values(), "")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/metrics", headers={"Authorization": auth, "Connection": "close"})
        body = conn.getresponse().read().decode()
        conn.close()
    except Exception:
        return values
    for line in body.splitlines():
        name, _, value = line.rpartition(" ")
        if name in COUNTERS:
            values[COUNTERS[name]] = str(int(float(value)))
    return values


def time_wait():
    r = subprocess.run(f"ip netns exec {netns} ss -Htan state time-wait | wc -l", shell=True,
                       capture_output=True, text=True, timeout=60)
    return r.stdout.strip()


out = open(out_path, "w", buffering=1)
out.write(",".join(FIELDS) + "\n")
last_t, last_cpu = None, None
k = 0
while True:
    target = t0 + k * period
    if target > t0 + seconds + 0.5:
        break
    time.sleep(max(0.0, target - time.time()))
    try:
        now, ticks, st, fds = time.time(), cpu_ticks(), status(), len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        out.write(f"{k - 1},{time.time() - t0:.1f},server gone\n")
        break
    cpu = "" if last_t is None else f"{(ticks - last_cpu) / TICK / (now - last_t) * 100:.1f}"
    last_t, last_cpu = now, ticks
    row = {"period": k - 1, "t": f"{now - t0:.1f}", "rss_kib": st.get("VmRSS", ""), "fds": fds,
           "threads": st.get("Threads", ""), "cpu_pct": cpu, "tw_ss": time_wait(), **exporter()}
    row.update(zip(("load1", "load5", "load15"), open("/proc/loadavg").read().split()[:3]))
    out.write(",".join(str(row[f]) for f in FIELDS) + "\n")
    k += 1
out.close()
