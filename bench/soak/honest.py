#!/usr/bin/env python3
"""Honest scrapers for bench/soak.sh: N threads, each scraping /metrics with
basic auth over its own keep-alive connection, a short pause between scrapes,
until the deadline.

Like Prometheus (Go's net/http), a request that fails on a *reused*
connection before any byte of the answer arrived (the server closed it while
idle: idle timeout or eviction at the connection cap) is retried once on a
fresh connection; that counts as a retry, not an error. An error is any
answer other than 200, a timeout, or a failure on a fresh connection.

Writes one line per scrape to OUT: seconds since T0, latency in ms (retry
included), outcome (200, another status, or conn:<exception>), retried (0/1).

  honest.py PORT USER PASSWORD SCRAPERS PAUSE_S T0 SECONDS OUT
"""
import base64
import http.client
import sys
import threading
import time

port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
scrapers, pause, t0, seconds, out_path = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), sys.argv[8]
TIMEOUT = 10.0  # Prometheus's default scrape_timeout
headers = {
    "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
    "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    "User-Agent": "twscope-soak-honest",
}
deadline = t0 + seconds
out = open(out_path, "w", buffering=1)
out_lock = threading.Lock()


def record(start, latency, outcome, retried):
    with out_lock:
        out.write(f"{start - t0:.3f},{latency * 1000:.2f},{outcome},{int(retried)}\n")


def fresh():
    return http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)


def get(conn):
    """One GET on conn; returns the status, raises on a connection problem."""
    conn.request("GET", "/metrics", headers=headers)
    r = conn.getresponse()
    r.read()
    if r.will_close:
        conn.close()
    return r.status


def scraper(index):
    # Spread the first scrapes over one pause, as independent targets would be.
    time.sleep(max(0.0, t0 - time.time()) + pause * index / max(1, scrapers))
    conn = fresh()
    while time.time() < deadline:
        start = time.time()
        reused, retried = conn.sock is not None, False
        try:
            try:
                status = get(conn)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                # The server closed the idle keep-alive connection: retry once, fresh.
                conn.close()
                conn, retried = fresh(), True
                status = get(conn)
            record(start, time.time() - start, status, retried)
        except Exception as e:  # a timeout, a refused or reset fresh connection
            record(start, time.time() - start, f"conn:{type(e).__name__}", retried)
            conn.close()
            conn = fresh()
        time.sleep(pause)
    conn.close()


threads = [threading.Thread(target=scraper, args=(i,), daemon=True) for i in range(scrapers)]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=max(0.0, deadline - time.time()) + 2 * TIMEOUT + 5)
out.close()
