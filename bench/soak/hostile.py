#!/usr/bin/env python3
"""Hostile clients for bench/soak.sh, all bounded by the deadline, on loopback:

- loris:    LORIS connections that send a request line, then trickle one header
            byte per second and never finish the head;
- idle:     IDLE connections that connect and send nothing;
- oversize: OVERSIZE threads sending a request with a ~400 KB Authorization
            header in a loop (new connection each time);
- guess:    GUESS threads sending wrong passwords for the real user, a distinct
            password each time, over a keep-alive connection (reconnecting
            when the server closes it).

A loris or idle connection the server closes is reopened after 1 s.
Per sampling period, writes OUT_DIR/hostile.csv (period,kind,answer,count:
answer is the HTTP status the server sent, "closed" when it closed or reset
without one, "connect_failed") and OUT_DIR/holders.csv (period,kind,closed,
mean_lifetime_s,max_lifetime_s: how long the server let loris/idle
connections live).

  hostile.py PORT USER LORIS IDLE OVERSIZE GUESS OVERSIZE_PAUSE GUESS_PAUSE T0 SECONDS PERIOD OUT_DIR
"""
import base64
import collections
import http.client
import os
import selectors
import socket
import sys
import threading
import time

(port, user, loris_n, idle_n, oversize_n, guess_n, oversize_pause, guess_pause, t0, seconds, period, out_dir) = (
    int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]),
    float(sys.argv[7]), float(sys.argv[8]), float(sys.argv[9]), float(sys.argv[10]), float(sys.argv[11]), sys.argv[12])
deadline = t0 + seconds
ADDR = ("127.0.0.1", port)
REOPEN_AFTER = 1.0
TRICKLE = 1.0
HEADER_BYTES = 400_000

lock = threading.Lock()
counts = collections.Counter()              # (period, kind, answer) -> n
lifetimes = collections.defaultdict(list)   # (period, kind) -> [closed, sum_s, max_s]


def period_of(t):
    return max(0, int((t - t0) // period))


def count(kind, answer, n=1):
    with lock:
        counts[(period_of(time.time()), kind, str(answer))] += n


def lifetime(kind, seconds_alive):
    with lock:
        entry = lifetimes.setdefault((period_of(time.time()), kind), [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += seconds_alive
        entry[2] = max(entry[2], seconds_alive)


def status_of(data):
    """The status code of an HTTP answer's first bytes, or "closed"."""
    if data.startswith(b"HTTP/1.") and len(data) >= 12:
        return data[9:12].decode("ascii", "replace")
    return "closed"


def write_files():
    with lock:
        rows = sorted(counts.items())
        held = sorted(lifetimes.items())
    for name, lines in (
        ("hostile.csv", ["period,kind,answer,count"] + [f"{p},{k},{a},{n}" for (p, k, a), n in rows]),
        ("holders.csv", ["period,kind,closed,mean_lifetime_s,max_lifetime_s"]
         + [f"{p},{k},{c},{s / c:.2f},{m:.2f}" for (p, k), (c, s, m) in held]),
    ):
        tmp = os.path.join(out_dir, name + ".tmp")
        with open(tmp, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, os.path.join(out_dir, name))


def holders(kind, n, trickle):
    """Keeps n connections open; trickles one byte a second on each if asked."""
    sel = selectors.DefaultSelector()
    conns = {}             # socket -> [opened_at, next_send_at, bytes_received]
    reopen = [0.0] * n     # when each missing connection may be opened
    prefix = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "

    def close(s, answer):
        opened = conns.pop(s)[0]
        sel.unregister(s)
        s.close()
        count(kind, answer)
        lifetime(kind, time.time() - opened)
        reopen.append(time.time() + REOPEN_AFTER)

    while time.time() < deadline:
        now = time.time()
        due = [t for t in reopen if t <= now]
        reopen[:] = [t for t in reopen if t > now]
        for _ in due:
            try:
                s = socket.create_connection(ADDR, timeout=5)
                if trickle:
                    s.sendall(prefix)
                s.setblocking(False)
            except OSError:
                count(kind, "connect_failed")
                reopen.append(now + REOPEN_AFTER)
                continue
            count(kind, "opened")
            conns[s] = [now, now + TRICKLE, b""]
            sel.register(s, selectors.EVENT_READ)
        wait = min([c[1] for c in conns.values()] + reopen + [now + 0.5]) - now if trickle else 0.5
        for key, _ in sel.select(timeout=max(0.01, min(wait, 0.5))):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = None
            if data:
                conns[s][2] += data
                continue
            close(s, status_of(conns[s][2]))
        if trickle:
            now = time.time()
            for s, c in list(conns.items()):
                if c[1] <= now:
                    try:
                        s.send(b"a")
                        c[1] = now + TRICKLE
                    except BlockingIOError:
                        c[1] = now + TRICKLE
                    except OSError:
                        close(s, status_of(c[2]))
    for s in list(conns):
        s.close()


def oversize():
    head = (b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic "
            + b"A" * HEADER_BYTES + b"\r\n\r\n")
    while time.time() < deadline:
        try:
            s = socket.create_connection(ADDR, timeout=10)
        except OSError:
            count("oversize", "connect_failed")
            time.sleep(REOPEN_AFTER)
            continue
        data = b""
        try:
            try:
                s.sendall(head)
            except OSError:
                pass  # the server answered and closed before reading it all
            while len(data) < 65536:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        finally:
            s.close()
        count("oversize", status_of(data))
        time.sleep(oversize_pause)


def guesser(index):
    conn = http.client.HTTPConnection(*ADDR, timeout=10)
    n = 0
    while time.time() < deadline:
        n += 1
        password = f"guess-{index}-{n}-{time.time_ns()}"
        auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        try:
            conn.request("GET", "/metrics", headers={"Authorization": auth})
            r = conn.getresponse()
            r.read()
            count("guess", r.status)
            if r.will_close:
                conn.close()
        except Exception:
            count("guess", "closed")
            conn.close()
            time.sleep(REOPEN_AFTER)
        time.sleep(guess_pause)
    conn.close()


def reporter():
    while time.time() < deadline:
        time.sleep(min(period, max(0.1, deadline - time.time())))
        write_files()


time.sleep(max(0.0, t0 - time.time()))
threads = [threading.Thread(target=reporter, daemon=True)]
if loris_n:
    threads.append(threading.Thread(target=holders, args=("loris", loris_n, True), daemon=True))
if idle_n:
    threads.append(threading.Thread(target=holders, args=("idle", idle_n, False), daemon=True))
threads += [threading.Thread(target=oversize, daemon=True) for _ in range(oversize_n)]
threads += [threading.Thread(target=guesser, args=(i,), daemon=True) for i in range(guess_n)]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=max(0.0, deadline - time.time()) + 15)
write_files()
