//! `twscope trace` as text: a row per process × destination, then the
//! verdict and its evidence. Every number comes from the core's
//! [`TraceReport`].

use std::fmt::Write;

use twscope_core::status::endpoint;
use twscope_core::trace::{DestinationTrace, ProcessTrace, TraceReport};

use crate::style::{printable, BOLD, DIM};

/// Rows shown per process; the JSON has them all.
const DESTINATIONS_SHOWN: usize = 5;
/// Processes shown (failing first, then busiest); the JSON has them all.
const PROCESSES_SHOWN: usize = 20;

fn lifetime(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

fn failures(d: &DestinationTrace) -> String {
    if d.failures.is_empty() {
        return "-".into();
    }
    d.failures
        .iter()
        .map(|(errno, n)| format!("{n} {errno}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn who(p: &ProcessTrace) -> String {
    format!("{} ({})", printable(&p.comm), p.pid)
}

/// The whole report. `scope` says which namespaces were kept.
pub fn render(report: &TraceReport, scope: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{BOLD}twscope trace{BOLD:#}: {:.1} s, {scope}, {} process{} connecting",
        report.duration_s,
        report.processes.len(),
        if report.processes.len() == 1 { "" } else { "es" }
    );
    if !report.processes.is_empty() {
        let _ = writeln!(
            out,
            "\n{BOLD}{:<24} {:<22} {:<24} {:>8} {:>8} {:>9} {:>9} {:>5} {:>6}  FAILED{BOLD:#}",
            "PROCESS (PID)", "CONTAINER", "DESTINATION", "OPEN/s", "TW/s", "LIFE p50", "p99", "MAX", "RESETS"
        );
    }
    for p in report.processes.iter().take(PROCESSES_SHOWN) {
        let container = p.container.as_deref().map(printable).unwrap_or_else(|| "-".into());
        for (i, d) in p.destinations.iter().take(DESTINATIONS_SHOWN).enumerate() {
            let (name, box_) = if i == 0 {
                (who(p), container.clone())
            } else {
                (String::new(), String::new())
            };
            let (p50, p99) = d
                .lifetime_ms
                .map(|l| (lifetime(l.p50), lifetime(l.p99)))
                .unwrap_or_else(|| ("-".into(), "-".into()));
            let flag = if d.pool_bypass {
                "  ← connection per request"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "{:<24} {:<22} {:<24} {:>8.1} {:>8.1} {:>9} {:>9} {:>5} {:>6}  {}{flag}",
                name,
                box_,
                endpoint(&d.addr.to_string(), d.port),
                d.connects_per_s,
                d.time_wait_left_per_s,
                p50,
                p99,
                d.max_concurrent,
                d.resets,
                failures(d),
            );
        }
        if p.destinations.len() > DESTINATIONS_SHOWN {
            let _ = writeln!(
                out,
                "{DIM}{:<24} … {} more destinations (--json lists all){DIM:#}",
                "",
                p.destinations.len() - DESTINATIONS_SHOWN
            );
        }
    }
    if report.processes.len() > PROCESSES_SHOWN {
        let _ = writeln!(
            out,
            "{DIM}… {} more processes, each less busy (--json lists all){DIM:#}",
            report.processes.len() - PROCESSES_SHOWN
        );
    }
    let _ = writeln!(out, "\n{BOLD}verdict{BOLD:#}: {}", printable(&report.verdict.summary));
    for line in &report.verdict.evidence {
        let _ = writeln!(out, "  - {}", printable(line));
    }
    let losses = report.losses;
    if losses.total() > 0 {
        let _ = writeln!(
            out,
            "{DIM}not recorded: {} failure events (ring buffer full; counts above are still exact), {} new process×destination keys (map full), {} connections (socket map full){DIM:#}",
            losses.events_dropped, losses.flows_full, losses.sockets_full
        );
    }
    out
}
