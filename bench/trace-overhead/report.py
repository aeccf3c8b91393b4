#!/usr/bin/env python3
"""bench/trace-overhead.sh's helper.

  report.py fdinfo PID                 what process PID holds in the kernel: its
                                       bpf-map and bpf-prog fds (fdinfo), map
                                       names by id, tracepoint of each program
  report.py record WORK INDEX KIND K=V…   one run's JSON line
  report.py report WORK K=V…           the Markdown section
"""
import ctypes
import json
import os
import platform
import statistics
import struct
import sys

MAP_TYPES = {1: "hash", 2: "array", 4: "perf_event_array", 5: "percpu_hash", 6: "percpu_array", 9: "lru_hash",
             10: "lru_percpu_hash", 27: "ringbuf"}
BPF_MAP_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD = 14, 15
SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())


def map_name(map_id):
    """The map's name (bpf_map_info.name), or None."""
    if SYS_BPF is None:
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def bpf(cmd, attr):
        buf = ctypes.create_string_buffer(attr, len(attr))
        return libc.syscall(ctypes.c_long(SYS_BPF), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))

    fd = bpf(BPF_MAP_GET_FD_BY_ID, struct.pack("III", map_id, 0, 0))
    if fd < 0:
        return None
    try:
        info = ctypes.create_string_buffer(96)
        if bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("IIQ", fd, 96, ctypes.addressof(info))) < 0:
            return None
        return info.raw[24:40].split(b"\0")[0].decode() or None   # struct bpf_map_info.name
    finally:
        os.close(fd)


def fdinfo(pid):
    maps, progs, links = [], {}, {}
    for fd in sorted(os.listdir(f"/proc/{pid}/fd"), key=int):
        try:
            kind = os.readlink(f"/proc/{pid}/fd/{fd}")
            fields = dict(l.split(":", 1) for l in open(f"/proc/{pid}/fdinfo/{fd}") if ":" in l)
        except OSError:
            continue
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if kind == "anon_inode:bpf-map":
            map_id = int(fields["map_id"])
            maps.append({"id": map_id, "name": map_name(map_id) or f"id {map_id}",
                         "type": MAP_TYPES.get(int(fields["map_type"]), fields["map_type"]),
                         "key_size": int(fields["key_size"]), "value_size": int(fields["value_size"]),
                         "max_entries": int(fields["max_entries"]), "map_flags": fields["map_flags"],
                         "memlock": int(fields["memlock"])})
        elif kind == "anon_inode:bpf-prog":
            progs[fields["prog_id"]] = {"tag": fields.get("prog_tag", "?"), "memlock": int(fields["memlock"]), "run_time_ns": int(fields.get("run_time_ns", 0)),
                                        "run_cnt": int(fields.get("run_cnt", 0)),
                                        "verified_insns": int(fields.get("verified_insns", 0))}
        elif kind == "anon_inode:bpf_link" and "prog_id" in fields:
            links[fields["prog_id"]] = fields.get("tp_name", "?")
    for prog_id, prog in progs.items():
        prog["tracepoint"] = links.get(prog_id, "?")
    print(json.dumps({"maps": maps, "progs": list(progs.values())}))


def record(work, index, kind, facts):
    facts = dict(a.split("=", 1) for a in facts)
    churn = json.load(open(f"{work}/churn.{index}.json"))
    wall, user, system, maxrss = open(f"{work}/time.{index}").read().split()[-4:]
    line = {"index": int(index), "kind": kind, **churn, "wall_s": float(wall), "user_s": float(user),
            "sys_s": float(system), "churn_rss_kib": int(maxrss), "busy": float(facts["busy"]),
            "load": facts["load"], "tw_before": int(facts["tw_before"]), "tw_after": int(facts["tw_after"])}
    ticks, tck = int(facts["machine_ticks"]), int(facts["clk_tck"])
    line["machine_busy_s"] = int(facts["machine_busy_ticks"]) / tck
    line["machine_s"] = ticks / tck
    trace_path = f"{work}/trace.{index}.json"
    if os.path.getsize(trace_path):
        trace = json.load(open(trace_path))
        mine = [p for p in trace["processes"] if p["pid"] == churn["pid"]]
        dest = [d for p in mine for d in p["destinations"]]
        line.update({
            "seen_connects": sum(d["connects"] for d in dest),
            "seen_established": sum(d["established"] for d in dest),
            "seen_time_wait_left": sum(d["time_wait_left"] for d in dest),
            "seen_destinations": len(dest),
            "seen_all_connects": sum(d["connects"] for p in trace["processes"] for d in p["destinations"]),
            "losses": trace["losses"], "dropped": trace["dropped"],
            "tracer_attach_s": int(facts["attach"].split()[0]) / 1e9,
            "tracer_run_s": (int(facts["done"].split()[0]) - int(facts["attach"].split()[0])) / 1e9,
            "tracer_attach_ticks_s": int(facts["attach"].split()[1]) / tck,
            "tracer_run_ticks_s": (int(facts["done"].split()[1]) - int(facts["attach"].split()[1])) / tck,
            **json.load(open(f"{work}/maps.{index}.json")),
            **{k.rstrip(":"): int(v) for k, v in (l.split() for l in open(f"{work}/rss.{index}"))},
        })
    print(json.dumps(line))


def median_spread(values):
    med = statistics.median(values)
    return med, min(values), max(values), (max(values) - min(values)) / med * 100


def report(work, facts):
    facts = dict(a.split("=", 1) for a in facts)
    runs = [json.loads(l) for l in open(f"{work}/runs.jsonl")]
    machine = json.load(open(f"{work}/machine.json"))
    rate = lambda r: r["attempts"] / r["elapsed_s"]
    cpu_us = lambda r: (r["user_s"] + r["sys_s"]) / r["attempts"] * 1e6
    cores = os.cpu_count()

    def during(r):
        # Cores busy during the churn beyond the churn and the tracer (the whole
        # machine's busy time from /proc/stat, over the churn's wall time).
        wall = r["machine_s"] / cores
        return (r["machine_busy_s"] - r["user_s"] - r["sys_s"] - r.get("tracer_run_s", 0)) / max(wall, 1e-9)
    a = [r for r in runs if r["kind"] == "without"]
    b = [r for r in runs if r["kind"] == "with"]
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")) / 1048576
    workload = (f"{int(facts['COUNT']):,} loopback connections per run (connect, "
                f"{'request, reply, ' if facts['REQUEST'] == '1' else ''}close) over {facts['PORTS']} server ports, "
                f"{facts['THREADS']} client threads, {'paced at ' + facts['RATE'] + '/s' if facts['RATE'] else 'unpaced'}")
    print(f"Machine: {os.cpu_count()} cores ({model}), {mem:.0f} GiB, kernel {platform.release()}. "
          f"Load average (1 min): {machine['load_first']} when started, {machine['load_start']} when measuring began, "
          f"{facts['load_end']} at the end.")
    print()
    print(f"Workload: {workload}; a fresh namespace per run; 1 warm-up run, then {facts['PAIRS']} pairs without/with the tracer.")
    print()
    print(f"Built from {facts['rev']}{' with uncommitted changes in ' + facts['dirty'] if facts['dirty'] else ' (no uncommitted change to bpf/ or the crates)'}; "
          f"BPF object sha256 {facts['object'][:12]}….")
    print()
    print("The load column counts this benchmark's own threads (2 clients, 20 servers) once it runs; "
          "\"others\" is the CPU the rest of the machine used in the 2 s before each run, while nothing of the benchmark ran, "
          "and during it beyond the churn and the tracer (that includes the kernel's work outside the churn's context: softirq threads and the like).")
    print()
    print("| run | tracer | connections/s | elapsed | churn user+sys | CPU µs / connection | tracer saw (connects / churn's) | tracer CPU during the churn: schedstat (/proc/PID/stat) | others' CPU before / during (cores) | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        if r["kind"] == "warmup":
            continue
        traced = "seen_connects" in r
        seen = f"{r['seen_connects']:,} / {r['attempts']:,}" if traced else "—"
        if traced and r["seen_connects"] < 0.99 * r["attempts"]:
            seen += " **NOT SEEN**"
        tcpu = f"{r['tracer_run_s'] * 1000:.1f} ms ({r['tracer_run_ticks_s'] * 1000:.0f} ms)" if traced else "—"
        kind = {"without": "no", "with": "yes", "stats": "yes, bpf_stats on (not in the pairs)",
                "prof-without": "no, under perf (not in the pairs)", "prof-with": "yes, under perf (not in the pairs)"}[r["kind"]]
        print(f"| {r['index']} | {kind} | {rate(r):,.0f} | {r['elapsed_s']:.2f} s | {r['user_s'] + r['sys_s']:.2f} s | "
              f"{cpu_us(r):.1f} | {seen} | {tcpu} | {r['busy']:.2f} / {during(r):.2f} | {r['load']} |")
    print()
    if not a or not b:
        return
    ra, rb = median_spread([rate(r) for r in a]), median_spread([rate(r) for r in b])
    ca, cb = statistics.median(cpu_us(r) for r in a), statistics.median(cpu_us(r) for r in b)
    pairs = [rate(y) / rate(x) - 1 for x, y in zip(a, b)]
    cost = (1 - rb[0] / ra[0]) * 100
    print("| | without the tracer | with the tracer | cost |")
    print("|---|---|---|---|")
    print(f"| connections/s, median (min–max, spread) | {ra[0]:,.0f} ({ra[1]:,.0f}–{ra[2]:,.0f}, {ra[3]:.1f}%) | "
          f"{rb[0]:,.0f} ({rb[1]:,.0f}–{rb[2]:,.0f}, {rb[3]:.1f}%) | **{cost:.1f}%** |")
    print(f"| pairwise (with ÷ without − 1), median (min … max) | | | {statistics.median(pairs) * 100:+.1f}% "
          f"({min(pairs) * 100:+.1f} … {max(pairs) * 100:+.1f}%) |")
    print(f"| churn CPU (user+sys) per connection, median | {ca:.1f} µs | {cb:.1f} µs | {(cb / ca - 1) * 100:+.1f}% |")
    print()
    seen = [r["seen_connects"] / r["attempts"] for r in b]
    losses = sum(sum(r["losses"].values()) + r["dropped"] for r in b)
    tracer_cpu = [r["tracer_run_s"] for r in b]
    last = b[-1]
    worked = "worked in every run" if min(seen) >= 0.99 else "MISSED CONNECTIONS (under 99% counted in some runs)"
    print(f"The tracer {worked}: it counted {min(seen) * 100:.2f}–{max(seen) * 100:.2f}% of the churn's connections "
          f"(established {min(r['seen_established'] / r['attempts'] for r in b) * 100:.2f}–"
          f"{max(r['seen_established'] / r['attempts'] for r in b) * 100:.2f}%, TIME_WAIT left "
          f"{min(r['seen_time_wait_left'] / r['attempts'] for r in b) * 100:.2f}–"
          f"{max(r['seen_time_wait_left'] / r['attempts'] for r in b) * 100:.2f}%), "
          f"over {last['seen_destinations']} destinations; losses and dropped events: {losses}. "
          f"Its own process used {statistics.median(tracer_cpu) * 1000:.1f} ms of CPU (user+sys from schedstat, median; "
          f"{min(tracer_cpu) * 1000:.1f}–{max(tracer_cpu) * 1000:.1f} ms; /proc/PID/stat in 10 ms ticks: "
          f"{statistics.median(r['tracer_run_ticks_s'] for r in b) * 1000:.0f} ms) during a {statistics.median(r['elapsed_s'] for r in b):.1f} s churn, "
          f"{statistics.median(r['tracer_attach_ticks_s'] for r in b) * 1000:.0f} ms (stat) to load and attach; "
          f"RSS {max(r['VmRSS'] for r in b) / 1024:.1f} MiB (peak {max(r['VmHWM'] for r in b) / 1024:.1f} MiB).")
    print()
    print("BPF maps held by the tracer, from `/proc/<pid>/fdinfo` at the end of the last churn:")
    print()
    print("| map | type | key / value bytes | max_entries | flags | memlock |")
    print("|---|---|---|---|---|---|")
    for m in last["maps"]:
        print(f"| {m['name']} | {m['type']} | {m['key_size']} / {m['value_size']} | {m['max_entries']:,} | {m['map_flags']} | "
              f"{m['memlock'] / 1024:,.1f} KiB |")
    total = sum(m["memlock"] for m in last["maps"])
    progs = sum(p["memlock"] for p in last["progs"])
    print(f"| **all {len(last['maps'])} maps** | | | | | **{total / 1048576:.2f} MiB** |")
    print()
    print(f"Plus {len(last['progs'])} programs, {progs / 1024:.0f} KiB memlock "
          "(" + ", ".join(f"{p['tracepoint']}: tag {p['tag']}, {p['verified_insns']:,} verified insns" for p in last["progs"]) + ").")
    print()
    stats = [r for r in runs if r["kind"] == "stats"]
    if stats:
        s = stats[-1]
        churn_cpu = s["user_s"] + s["sys_s"]
        print(f"Run {s['index']}, kernel.bpf_stats_enabled=1 ({s['attempts']:,} connections, {rate(s):,.0f}/s): what each program cost.")
        print()
        print("| program (tracepoint) | runs | runs / connection | ns / run | total | share of the churn's CPU |")
        print("|---|---|---|---|---|---|")
        total_ns = 0
        for p in s["progs"]:
            total_ns += p["run_time_ns"]
            per = p["run_time_ns"] / p["run_cnt"] if p["run_cnt"] else 0
            print(f"| {p['tracepoint']} | {p['run_cnt']:,} | {p['run_cnt'] / s['attempts']:.2f} | {per:.0f} | "
                  f"{p['run_time_ns'] / 1e6:.0f} ms | {p['run_time_ns'] / 1e9 / churn_cpu * 100:.2f}% |")
        print(f"| **all** | | | | **{total_ns / 1e6:.0f} ms** ({total_ns / s['attempts']:.0f} ns / connection) | "
              f"**{total_ns / 1e9 / churn_cpu * 100:.2f}%** |")
        print()
        print("(Runs are counted machine-wide: the tracepoints fire for every process's sockets, "
              "the --netns filter is applied in user space.)")
        print()
    profile(work, runs)


# Kernel symbols by what they are part of; the first match wins.
CATEGORIES = [
    ("BPF programs (JIT-ed)", lambda s: s.startswith("bpf_prog_")),
    ("BPF helpers and maps", lambda s: s.startswith(("bpf_", "__bpf_", "htab_", "__htab_", "alloc_htab", "free_htab",
                                                     "pcpu_freelist", "__pcpu_freelist", "lookup_nulls_elem", "lookup_elem_raw",
                                                     "copy_map_value", "check_and_free_fields", "__task_cgroup",
                                                     "___bpf", "bpf_mem_", "unit_alloc", "unit_free", "htab_"))
                                    and not s.startswith(("bpf_trace_run", "__bpf_trace_"))),
    ("tracepoint glue (perf, trace_call_bpf)", lambda s: s.startswith(("perf_trace_", "perf_tp_", "trace_call_bpf", "perf_syscall_",
                                                                       "bpf_trace_run", "__bpf_trace_", "perf_fetch_caller_regs",
                                                                       "__traceiter_", "tracing_gen_ctx", "perf_swevent",
                                                                       "__perf_", "perf_"))),
    ("syscall entry/exit work", lambda s: s.startswith(("syscall_trace_enter", "syscall_exit_work", "syscall_enter_from_user_mode",
                                                        "syscall_exit_to_user_mode", "__syscall_", "ftrace_syscall_", "trace_sys_",
                                                        "do_syscall_64", "entry_SYSCALL", "syscall_return_via"))),
]


def perf_symbols(path):
    """{symbol: share of the samples' period}, and the period in ns."""
    import subprocess
    out = subprocess.run(["perf", "report", "-i", path, "--no-children", "--sort", "sym", "--stdio", "-g", "none",
                          "--percent-limit", "0"], capture_output=True, text=True, check=True).stdout
    total, shares = 0, {}
    for line in out.splitlines():
        if line.startswith("# Event count (approx.):"):
            total = int(line.split(":")[1])
        elif line.strip() and not line.startswith("#") and "%" in line:
            pct, rest = line.split("%", 1)
            sym = rest.split("]", 1)[1].strip() if "]" in rest else rest.strip()
            shares[sym] = shares.get(sym, 0) + float(pct) / 100
    return shares, total


def profile(work, runs):
    prof = {r["kind"]: r for r in runs if r["kind"].startswith("prof-")}
    if set(prof) != {"prof-without", "prof-with"}:
        return
    per_conn = {}
    for kind, r in prof.items():
        shares, total = perf_symbols(f"{work}/perf.{r['index']}.data")
        per_conn[kind] = {sym: share * total / 1000 / r["attempts"] for sym, share in shares.items()}   # µs per connection
    a, b = per_conn["prof-without"], per_conn["prof-with"]

    def category(sym):
        return next((name for name, match in CATEGORIES if match(sym)), "everything else")
    print(f"Profile (PROFILE=1): runs {prof['prof-without']['index']} and {prof['prof-with']['index']}, the churn under "
          f"`perf record -e cpu-clock -F 1999 -g` (not in the pairs), CPU in µs per connection by kernel/user symbol:")
    print()
    print("| part | without | with | with − without |")
    print("|---|---|---|---|")
    names = [name for name, _ in CATEGORIES] + ["everything else"]
    for name in names + ["all"]:
        ta = sum(v for s, v in a.items() if name == "all" or category(s) == name)
        tb = sum(v for s, v in b.items() if name == "all" or category(s) == name)
        bold = "**" if name == "all" else ""
        print(f"| {bold}{name}{bold} | {ta:.2f} | {tb:.2f} | {bold}{tb - ta:+.2f}{bold} |")
    print()
    grown = sorted(set(a) | set(b), key=lambda s: b.get(s, 0) - a.get(s, 0), reverse=True)[:15]
    print("The symbols that grew most (µs per connection):")
    print()
    print("| symbol | part | without | with | Δ |")
    print("|---|---|---|---|---|")
    for sym in grown:
        print(f"| `{sym}` | {category(sym)} | {a.get(sym, 0):.2f} | {b.get(sym, 0):.2f} | {b.get(sym, 0) - a.get(sym, 0):+.2f} |")
    print()


if __name__ == "__main__":
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "fdinfo":
        fdinfo(rest[0])
    elif command == "record":
        record(rest[0], rest[1], rest[2], rest[3:])
    elif command == "report":
        report(rest[0], rest[1:])
    else:
        sys.exit(__doc__)
