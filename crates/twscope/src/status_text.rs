//! The text rendering of `twscope status`: one screen, worst news last so it
//! stays on screen. Styles are ANSI; `anstream` strips them when stdout is not
//! a terminal or `NO_COLOR` is set.

use std::fmt::Write;

use anstyle::Style;
use twscope_core::kernel::Settings;
use twscope_core::owners::{Owner, ProcessScan};
use twscope_core::status::{Destination, Selection, Status, StatusReport};
use twscope_core::text::{rate, thousands};
use twscope_core::trace::{Connecting, TraceSummary};
use twscope_core::Severity;
use twscope_core::TcpState;

use crate::style::printable;
use crate::style::BOLD;
use crate::style::DIM;

use crate::style::severity as severity_style;

fn percent(fraction: f64) -> String {
    format!("{:.0}%", fraction * 100.0)
}

fn on_off(value: u8) -> &'static str {
    if value == 0 {
        "off"
    } else {
        "on"
    }
}

fn tw_reuse_words(s: &Settings, hold_s: f64) -> String {
    let delay = format!("after {} ms", thousands(u64::from(s.reuse_delay_ms())));
    let mode = match s.tcp_tw_reuse {
        0 => format!("off: every TIME_WAIT holds its port for {hold_s:.1} s"),
        1 => format!("on: connect() may reuse TIME_WAIT ports {delay}"),
        2 => format!("loopback only: other destinations wait the full {hold_s:.1} s (reuse {delay} on lo)"),
        n => format!("{n} (unknown value)"),
    };
    let mut text = format!("tcp_tw_reuse={} {mode}", s.tcp_tw_reuse);
    if s.tcp_tw_reuse != 0 && s.tcp_timestamps == 0 {
        text.push_str(", but tcp_timestamps=0 disables it");
    }
    text
}

/// `netns blue (inode N)`, or `netns inode N` for an unnamed one.
fn netns_label(netns: &twscope_core::NetnsInfo) -> String {
    if netns.name.starts_with("netns inode") {
        netns.name.clone()
    } else {
        format!("netns {} {DIM}(inode {}){DIM:#}", netns.name, netns.inode)
    }
}

/// Renders the destinations `selection` picks. Styles are embedded; the
/// caller's stream strips them.
pub fn render(status: &Status, selection: &Selection) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut out, &status.report(selection));
    out
}

fn write_report(out: &mut String, report: &StatusReport<'_>) -> std::fmt::Result {
    let status = report.status;
    writeln!(
        out,
        "{BOLD}twscope status{BOLD:#} · host {} · kernel {} · {}",
        status.host,
        status.kernel,
        netns_label(&status.netns)
    )?;
    writeln!(out)?;

    // States: the non-zero ones, biggest first.
    let mut states: Vec<(TcpState, u64)> = status.states.iter().filter(|&(_, n)| n > 0).collect();
    states.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    let states_text = if states.is_empty() {
        "none".to_string()
    } else {
        states
            .iter()
            .map(|(s, n)| format!("{} {}", s.name(), thousands(*n)))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    writeln!(
        out,
        "{BOLD}Sockets{BOLD:#}    {states_text}  {DIM}({} TCP sockets, dumped in {:.0} ms){DIM:#}",
        thousands(status.dump.sockets),
        status.dump.duration_ms
    )?;

    let e = &status.ephemeral;
    let listeners = match e.listeners_in_range.len() {
        0 => "no listener inside".to_string(),
        n => {
            let shown: Vec<String> = e.listeners_in_range.iter().take(5).map(u16::to_string).collect();
            let more = if n > 5 { ", …" } else { "" };
            format!(
                "{n} listening port{} inside ({}{more})",
                if n == 1 { "" } else { "s" },
                shown.join(", ")
            )
        }
    };
    writeln!(
        out,
        "{BOLD}Ports{BOLD:#}      ephemeral {}–{} = {} ports; {} reserved; {listeners} → {BOLD}{}{BOLD:#} per destination and source address",
        e.low,
        e.high,
        thousands(u64::from(e.size)),
        thousands(u64::from(e.reserved)),
        thousands(u64::from(e.available)),
    )?;

    let s = &status.settings;
    let recycle = match s.tcp_tw_recycle {
        Some(1) => " · tcp_tw_recycle=1 (breaks clients behind NAT: set it to 0)".to_string(),
        Some(n) => format!(" · tcp_tw_recycle={n}"),
        None => String::new(),
    };
    let life = &status.time_wait_lifetime;
    writeln!(
        out,
        "{BOLD}TIME_WAIT{BOLD:#}  60 s nominal (fixed in Linux); {:.1} s on average here, up to {:.1} s (HZ={} timer wheel) \
         · {} past 60 s now",
        life.mean_s,
        life.max_s,
        life.hz,
        thousands(life.past_nominal_expiry),
    )?;
    writeln!(
        out,
        "           {} · timestamps {}{recycle}",
        tw_reuse_words(s, life.mean_s),
        on_off(s.tcp_timestamps),
    )?;
    writeln!(
        out,
        "           {} of {} tw buckets used · tcp_fin_timeout {} s (FIN_WAIT2 only, not TIME_WAIT)",
        thousands(status.counters.sockstat_tw),
        thousands(s.tcp_max_tw_buckets),
        s.tcp_fin_timeout,
    )?;
    let c = &status.counters;
    let overflow_style = if c.tcp_time_wait_overflow > 0 {
        severity_style(Severity::Warning)
    } else {
        Style::new()
    };
    writeln!(
        out,
        "{BOLD}Counters{BOLD:#}   ActiveOpens {} · TW entered {} · TWRecycled {} · TWKilled {} · {overflow_style}TCPTimeWaitOverflow {}{overflow_style:#}",
        thousands(c.active_opens),
        thousands(c.tw),
        thousands(c.tw_recycled),
        thousands(c.tw_killed),
        thousands(c.tcp_time_wait_overflow),
    )?;
    if let Some(ct) = &status.conntrack {
        writeln!(
            out,
            "           conntrack {} of {} entries",
            thousands(ct.count),
            thousands(ct.max)
        )?;
    }
    if let Some(scan) = &status.process_scan {
        write_process_scan(out, scan)?;
    }
    if let Some(trace) = &status.trace {
        write_trace(out, trace)?;
    }
    writeln!(out)?;

    write_destinations(out, report)?;
    write_inbound(out, status)?;

    let style = severity_style(report.verdict.severity).bold();
    writeln!(out, "{style}{}{style:#}", report.verdict.summary)
}

fn write_destinations(out: &mut String, report: &StatusReport<'_>) -> std::fmt::Result {
    if report.destinations.is_empty() {
        let what = if report.destinations_total == 0 {
            "none"
        } else {
            "none shown"
        };
        return writeln!(out, "{BOLD}Outbound destinations{BOLD:#}: {what}\n");
    }
    writeln!(
        out,
        "{BOLD}Top destinations{BOLD:#} (outbound, {} of {}, by source ports in use; rate over the last {} s; \
         UTIL = ports connect() cannot use)",
        report.destinations.len(),
        report.destinations_total,
        report.status.window_s
    )?;
    let rows: Vec<[String; 10]> = report.destinations.iter().map(|d| destination_row(d)).collect();
    let header = [
        "DESTINATION",
        "TIME_WAIT",
        "ESTAB",
        "IN USE",
        "AVAILABLE",
        "UTIL",
        "CLOSE/s",
        "MAX/s",
        "RUNS OUT",
        "SEVERITY",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                // Text columns left-aligned, numbers right-aligned.
                if i == 0 || i >= 8 {
                    format!("{cell:<w$}", w = widths[i])
                } else {
                    format!("{cell:>w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let header_cells: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    writeln!(out, "{DIM}{}{DIM:#}", line(&header_cells))?;
    for (row, d) in rows.iter().zip(&report.destinations) {
        let text = line(row);
        // Colour only the severity word, which ends the line.
        let severity_at = text.len() - row[9].len();
        let style = severity_style(d.severity);
        writeln!(out, "{}{style}{}{style:#}", &text[..severity_at], &text[severity_at..])?;
        if let Some(owners) = &d.processes {
            writeln!(out, "  {DIM}held by:{DIM:#} {}", held_by(d, owners))?;
        }
        if let Some(connecting) = &d.connecting {
            writeln!(out, "  {DIM}connecting:{DIM:#} {}", connecting_line(connecting))?;
        }
    }
    writeln!(out)
}

/// Owners a `held by:` line names before `and N more`.
const OWNERS_SHOWN: usize = 4;

/// `python3 (pid 4242, 12 sockets), java (pid 77, 3)`, or why there is nobody.
fn held_by(d: &Destination, owners: &[Owner]) -> String {
    if owners.is_empty() {
        let live = d.in_use.saturating_sub(d.time_wait);
        return if live == 0 {
            "no process (TIME_WAIT sockets belong to none)".to_string()
        } else {
            format!(
                "no process found for its {} live socket{} (closed by their process, or held by one not read)",
                thousands(live),
                if live == 1 { "" } else { "s" }
            )
        };
    }
    let mut parts: Vec<String> = owners
        .iter()
        .take(OWNERS_SHOWN)
        .enumerate()
        .map(|(i, o)| {
            let container = o
                .container
                .as_deref()
                .map(|c| format!(", {}", printable(c)))
                .unwrap_or_default();
            let sockets = match (i, o.sockets) {
                (0, 1) => "1 socket".to_string(),
                (0, n) => format!("{} sockets", thousands(n)),
                (_, n) => thousands(n),
            };
            let comm = if o.comm.is_empty() { "?" } else { &o.comm };
            format!("{} (pid {}{container}, {sockets})", printable(comm), o.pid)
        })
        .collect();
    if owners.len() > OWNERS_SHOWN {
        parts.push(format!("and {} more", owners.len() - OWNERS_SHOWN));
    }
    parts.join(", ")
}

/// `orders-api (pid 4242, 100/s attempted, 96.7/s failing EADDRNOTAVAIL) ←
/// connection per request, …`, or that nobody connected.
fn connecting_line(connecting: &[Connecting]) -> String {
    if connecting.is_empty() {
        return "no process opened a connection during the trace".to_string();
    }
    let mut parts: Vec<String> = connecting
        .iter()
        .take(OWNERS_SHOWN)
        .map(|c| {
            let container = c
                .container
                .as_deref()
                .map(|label| format!(", {}", printable(label)))
                .unwrap_or_default();
            let failing = if c.failures.is_empty() {
                String::new()
            } else {
                let errnos: Vec<&str> = c.failures.keys().map(String::as_str).collect();
                format!(", {}/s failing {}", rate(c.failures_per_s), errnos.join(" "))
            };
            let flag = if c.pool_bypass {
                " ← connection per request"
            } else {
                ""
            };
            format!(
                "{} (pid {}{container}, {}/s attempted{failing}){flag}",
                printable(&c.comm),
                c.pid,
                rate(c.connects_per_s)
            )
        })
        .collect();
    if connecting.len() > OWNERS_SHOWN {
        parts.push(format!("and {} more", connecting.len() - OWNERS_SHOWN));
    }
    parts.join(", ")
}

/// `Trace      2.0 s: orders-api (pid 4242) cannot connect …` and the evidence.
fn write_trace(out: &mut String, trace: &TraceSummary) -> std::fmt::Result {
    writeln!(
        out,
        "{BOLD}Trace{BOLD:#}      {:.1} s of connects: {}",
        trace.duration_s,
        printable(&trace.verdict.summary)
    )?;
    for line in &trace.verdict.evidence {
        writeln!(out, "           {DIM}{}{DIM:#}", printable(line))?;
    }
    if trace.losses.total() > 0 {
        writeln!(
            out,
            "           {DIM}not recorded: {} failure events, {} process×destination keys, {} connections (maps full){DIM:#}",
            trace.losses.events_dropped, trace.losses.flows_full, trace.losses.sockets_full
        )?;
    }
    Ok(())
}

/// `Processes  12 of the namespace read; 3 could not be read (… CAP_SYS_PTRACE …)`.
fn write_process_scan(out: &mut String, scan: &ProcessScan) -> std::fmt::Result {
    write!(
        out,
        "{BOLD}Processes{BOLD:#}  {} in this namespace read for the sockets they hold",
        thousands(scan.processes_scanned as u64)
    )?;
    if scan.processes_unreadable > 0 && scan.processes_missing.is_none() {
        // Closed even to CAP_SYS_PTRACE: no privilege would help.
        write!(out, " · {} not readable", thousands(scan.processes_unreadable as u64))?;
    }
    if scan.sockets_without_owner > 0 {
        write!(
            out,
            " · {} live outbound sockets with no owner found",
            thousands(scan.sockets_without_owner)
        )?;
    }
    writeln!(out)?;
    if let Some(missing) = &scan.processes_missing {
        let style = severity_style(Severity::Warning);
        writeln!(out, "           {style}{missing}{style:#}")?;
    }
    Ok(())
}

fn destination_row(d: &Destination) -> [String; 10] {
    let severity = if d.tw_reuse {
        format!("{} (tw_reuse)", d.severity.name())
    } else {
        d.severity.name().to_string()
    };
    [
        d.endpoint(),
        thousands(d.time_wait),
        thousands(d.established),
        thousands(d.in_use),
        thousands(u64::from(d.available)),
        percent(d.utilization),
        rate(d.close_rate_per_s),
        rate(d.max_rate_per_s),
        d.outlook.short(),
        severity,
    ]
}

fn write_inbound(out: &mut String, status: &Status) -> std::fmt::Result {
    let with_time_wait: Vec<_> = status.inbound.iter().filter(|i| i.time_wait > 0).take(5).collect();
    if with_time_wait.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{BOLD}Inbound TIME_WAIT{BOLD:#} (server side: this host closed first; costs tw buckets, not ephemeral ports)"
    )?;
    writeln!(
        out,
        "{DIM}{:<8} {:>10} {:>8} {:>8}{DIM:#}",
        "PORT", "TIME_WAIT", "ESTAB", "TOTAL"
    )?;
    for i in with_time_wait {
        writeln!(
            out,
            "{:<8} {:>10} {:>8} {:>8}",
            i.port,
            thousands(i.time_wait),
            thousands(i.established),
            thousands(i.total)
        )?;
    }
    writeln!(out)
}
