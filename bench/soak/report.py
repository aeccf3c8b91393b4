#!/usr/bin/env python3
"""Merges bench/soak.sh's raw files into OUT_DIR/periods.csv (one row per
sampling period) and prints a Markdown table of WINDOW periods per row plus a
totals line.

  report.py OUT_DIR PERIOD_S WINDOW SOAK_SECONDS
"""
import collections
import csv
import os
import sys

out_dir, period, window, seconds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
periods = max(1, int(round(seconds / period)))


def quantile(sorted_values, q):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# Honest scrapes: t,latency_ms,outcome,retried
honest = collections.defaultdict(list)
with open(os.path.join(out_dir, "honest.log")) as f:
    for line in f:
        t, latency, outcome, retried = line.strip().split(",")
        p = min(periods - 1, max(0, int(float(t) // period)))
        honest[p].append((float(latency), outcome, retried == "1"))

hostile = collections.Counter()
path = os.path.join(out_dir, "hostile.csv")
if os.path.exists(path):
    for row in csv.DictReader(open(path)):
        hostile[(min(periods - 1, int(row["period"])), row["kind"], row["answer"])] += int(row["count"])
held = {}
path = os.path.join(out_dir, "holders.csv")
if os.path.exists(path):
    for row in csv.DictReader(open(path)):
        p = min(periods - 1, int(row["period"]))
        c, s, m = held.get((p, row["kind"]), (0, 0.0, 0.0))
        n = int(row["closed"])
        held[(p, row["kind"])] = (c + n, s + n * float(row["mean_lifetime_s"]), max(m, float(row["max_lifetime_s"])))

server = {}
for row in csv.DictReader(open(os.path.join(out_dir, "server.csv"))):
    if row.get("rss_kib"):
        server[int(row["period"])] = row


def hostile_sums(ps, kind):
    answers = collections.Counter()
    for (p, k, a), n in hostile.items():
        if k == kind and p in ps:
            answers[a] += n
    return answers


def held_sums(ps, kind):
    c = s = m = 0.0
    for p in ps:
        pc, psum, pm = held.get((p, kind), (0, 0.0, 0.0))
        c, s, m = c + pc, s + psum, max(m, pm)
    return int(c), (s / c if c else 0.0), m


def summary(ps):
    events = [e for p in ps for e in honest.get(p, [])]
    ok = sorted(l for l, o, _ in events if o == "200")
    errors = collections.Counter(o for _, o, _ in events if o != "200")
    over, guess = hostile_sums(ps, "oversize"), hostile_sums(ps, "guess")
    loris, idle = hostile_sums(ps, "loris"), hostile_sums(ps, "idle")
    rows = [server[p] for p in ps if p in server]
    num = lambda key: [float(r[key]) for r in rows if r.get(key) not in (None, "")]
    return {
        "scrapes": len(ok), "errors": sum(errors.values()), "error_kinds": errors,
        "retried": sum(1 for _, _, r in events if r),
        "p50": quantile(ok, 0.5), "p99": quantile(ok, 0.99), "max": ok[-1] if ok else None,
        "over": over, "guess": guess, "loris": loris, "idle": idle,
        "loris_held": held_sums(ps, "loris"), "idle_held": held_sums(ps, "idle"),
        "rss": num("rss_kib"), "fds": num("fds"), "threads": num("threads"), "cpu": num("cpu_pct"),
        "tw": num("tw_ss"), "tw_exporter": num("tw_exporter"), "rows": rows,
    }


def made(answers):
    return sum(n for a, n in answers.items() if a not in ("opened", "connect_failed"))


# Per-period CSV.
fields = ["period", "honest_scrapes", "honest_errors", "honest_retried", "p50_ms", "p99_ms", "max_ms",
          "oversize_sent", "oversize_431", "oversize_closed", "oversize_other",
          "guess_sent", "guess_401", "guess_429", "guess_closed", "guess_other",
          "loris_opened", "loris_closed", "loris_mean_life_s", "idle_opened", "idle_closed", "idle_mean_life_s",
          "rss_kib", "fds", "threads", "cpu_pct", "tw_ss", "tw_exporter",
          "dumps", "evicted", "refused", "timed_out", "throttled", "load1"]
with open(os.path.join(out_dir, "periods.csv"), "w") as f:
    f.write(",".join(fields) + "\n")
    for p in range(periods):
        s = summary([p])
        r = server.get(p, {})
        fmt = lambda v: "" if v is None else f"{v:.1f}"
        values = [p, s["scrapes"], s["errors"], s["retried"], fmt(s["p50"]), fmt(s["p99"]), fmt(s["max"]),
                  made(s["over"]), s["over"]["431"], s["over"]["closed"], made(s["over"]) - s["over"]["431"] - s["over"]["closed"],
                  made(s["guess"]), s["guess"]["401"], s["guess"]["429"], s["guess"]["closed"],
                  made(s["guess"]) - s["guess"]["401"] - s["guess"]["429"] - s["guess"]["closed"],
                  s["loris"]["opened"], s["loris_held"][0], f"{s['loris_held'][1]:.1f}",
                  s["idle"]["opened"], s["idle_held"][0], f"{s['idle_held'][1]:.1f}"]
        values += [r.get(k, "") for k in ("rss_kib", "fds", "threads", "cpu_pct", "tw_ss", "tw_exporter",
                                          "dumps", "evicted", "refused", "timed_out", "throttled", "load1")]
        f.write(",".join(str(v) for v in values) + "\n")

ms = lambda v: "—" if v is None else (f"{v:.0f} ms" if v < 10000 else f"{v / 1000:.1f} s")
mib = lambda kib: f"{kib / 1024:.1f}"
k = lambda n: f"{n / 1000:.0f}k" if n >= 10000 else f"{n:,}"


def answers_cell(a, keys):
    return f"{made(a):,} → " + " / ".join(f"{a[key]:,}" for key in keys)


print(f"| minutes | honest scrapes | honest errors | p50 | p99 | max | oversize sent → 431 / closed | "
      f"wrong passwords sent → 401 / 429 / closed | slow-loris conns (mean life) | idle conns (mean life) | "
      f"RSS MiB end (max) | fds end (max) | threads end (max) | server CPU | TIME_WAIT min–max |")
print("|" + "---|" * 15)
start = server.get(-1)
for w in range(0, periods, window):
    ps = list(range(w, min(periods, w + window)))
    s = summary(ps)
    last = lambda xs: xs[-1] if xs else 0
    print(f"| {w * period / 60:.0f}–{(ps[-1] + 1) * period / 60:.0f} | {s['scrapes']:,} | {s['errors']} | {ms(s['p50'])} | "
          f"{ms(s['p99'])} | {ms(s['max'])} | {answers_cell(s['over'], ('431', 'closed'))} | "
          f"{answers_cell(s['guess'], ('401', '429', 'closed'))} | "
          f"{s['loris']['opened']:,} ({s['loris_held'][1]:.1f} s) | {s['idle']['opened']:,} ({s['idle_held'][1]:.0f} s) | "
          f"{mib(last(s['rss']))} ({mib(max(s['rss'], default=0))}) | {last(s['fds']):.0f} ({max(s['fds'], default=0):.0f}) | "
          f"{last(s['threads']):.0f} ({max(s['threads'], default=0):.0f}) | "
          f"{sum(s['cpu']) / len(s['cpu']) if s['cpu'] else 0:.0f}% | "
          f"{min(s['tw'], default=0):,.0f}–{max(s['tw'], default=0):,.0f} |")
s = summary(list(range(periods)))
rss0 = float(start["rss_kib"]) if start else 0
fd0 = float(start["fds"]) if start else 0
th0 = float(start["threads"]) if start else 0
last_row = s["rows"][-1] if s["rows"] else {}
print()
print(f"**Totals over {seconds / 60:.0f} min:** {s['scrapes']:,} honest scrapes answered 200, "
      f"{s['errors']} honest errors{' (' + ', '.join(f'{n} {o}' for o, n in s['error_kinds'].items()) + ')' if s['errors'] else ''}, "
      f"{s['retried']:,} retried once on a fresh connection after the server closed an idle keep-alive; "
      f"latency p50 {ms(s['p50'])}, p99 {ms(s['p99'])}, max {ms(s['max'])}. "
      f"Hostile: {answers_cell(s['over'], ('431', 'closed'))} oversized requests (431 / closed), "
      f"{answers_cell(s['guess'], ('401', '429', 'closed'))} wrong passwords (401 / 429 / closed), "
      f"{s['loris']['opened']:,} slow-loris connections (closed after {s['loris_held'][1]:.1f} s on average, max {s['loris_held'][2]:.1f} s), "
      f"{s['idle']['opened']:,} idle connections (closed after {s['idle_held'][1]:.0f} s on average, max {s['idle_held'][2]:.0f} s). "
      f"Server: RSS {mib(rss0)} → {mib(last_row.get('rss_kib', 0) and float(last_row['rss_kib']))} MiB (max {mib(max(s['rss'], default=0))}), "
      f"fds {fd0:.0f} → {last_row.get('fds', '?')} (max {max(s['fds'], default=0):.0f}), "
      f"threads {th0:.0f} → {last_row.get('threads', '?')} (max {max(s['threads'], default=0):.0f}), "
      f"CPU {sum(s['cpu']) / len(s['cpu']) if s['cpu'] else 0:.0f}% of one core on average; "
      f"TIME_WAIT {min(s['tw'], default=0):,.0f}–{max(s['tw'], default=0):,.0f} by ss "
      f"({min(s['tw_exporter'], default=0):,.0f}–{max(s['tw_exporter'], default=0):,.0f} as exported); "
      f"exporter counters at the end: {last_row.get('dumps', '?')} dumps, {last_row.get('timed_out', '?')} connections timed out, "
      f"{last_row.get('evicted', '?')} evicted, {last_row.get('refused', '?')} refused, {last_row.get('throttled', '?')} answered 429.")
