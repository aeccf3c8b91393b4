//! The text rendering of `twscope plan`.

use std::fmt::Write;

use twscope_core::text::{rate, thousands};
use twscope_core::{Plan, Workload};

use crate::style::BOLD;
use crate::style::DIM;

/// The inputs as JSON, next to the plan, so a result says what it assumed.
pub fn workload_json(w: &Workload) -> serde_json::Value {
    serde_json::json!({
        "rate_per_s": w.rate_per_s,
        "destinations": w.destinations,
        "source_ips": w.source_ips,
        "range": { "low": w.range.0, "high": w.range.1 },
        "reserved": w.reserved.to_string(),
        "tw_reuse": w.tw_reuse,
        "reuse_delay_ms": w.reuse_delay_ms,
        "time_wait_s": w.time_wait_s,
        "latency_ms": w.latency_ms,
    })
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

fn seconds(s: f64) -> String {
    if s >= 10.0 || s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

pub fn render(w: &Workload, p: &Plan) -> String {
    let mut out = String::new();
    let _ = write_plan(&mut out, w, p);
    out
}

fn write_plan(out: &mut String, w: &Workload, p: &Plan) -> std::fmt::Result {
    let reserved = if w.reserved.is_empty() {
        String::new()
    } else {
        format!(", reserved {}", w.reserved)
    };
    writeln!(
        out,
        "{BOLD}twscope plan{BOLD:#} · {}/s new connections over {}, {}, range {}–{}{reserved}, tw_reuse {}",
        rate(w.rate_per_s),
        plural(u64::from(w.destinations), "destination", "destinations"),
        plural(u64::from(w.source_ips), "source address", "source addresses"),
        w.range.0,
        w.range.1,
        if w.tw_reuse { "on" } else { "off" },
    )?;
    writeln!(out)?;
    let hold = if w.tw_reuse {
        format!("{} (the tw_reuse delay)", seconds(p.hold_s))
    } else {
        format!("{} (TIME_WAIT)", seconds(p.hold_s))
    };
    let rows: Vec<(&str, String, String)> = vec![
        ("a closed connection holds its port", hold, String::new()),
        (
            "new connections per destination",
            format!("{}/s", rate(p.rate_per_destination_per_s)),
            String::new(),
        ),
        (
            "ports needed per destination",
            thousands(p.ports_needed),
            format!("{}/s × {}", rate(p.rate_per_destination_per_s), seconds(p.hold_s)),
        ),
        (
            "ports available per destination",
            thousands(p.ports_available),
            format!(
                "{} per source address × {}",
                thousands(u64::from(p.ports_per_source)),
                w.source_ips
            ),
        ),
        (
            "max sustainable rate",
            format!("{}/s per destination", rate(p.max_rate_per_s)),
            if w.destinations > 1 {
                format!(
                    "{}/s over all {} destinations",
                    rate(p.max_total_rate_per_s),
                    w.destinations
                )
            } else {
                String::new()
            },
        ),
        (
            "headroom",
            format!(
                "{} ports",
                if p.headroom < 0 {
                    format!("−{}", thousands(p.headroom.unsigned_abs()))
                } else {
                    thousands(p.headroom as u64)
                }
            ),
            format!("{:.0}% of the budget needed", p.utilization * 100.0),
        ),
        (
            "exhausted, from empty, after",
            p.exhaustion_s.map_or("never".to_string(), seconds),
            if p.exhaustion_s.is_some() {
                "then connect() fails: cannot assign requested address".to_string()
            } else {
                String::new()
            },
        ),
        (
            "a pool covering the rate",
            plural(p.pool_size, "connection", "connections"),
            format!(
                "{}/s × {} ms per request (Little's law)",
                rate(p.rate_per_destination_per_s),
                w.latency_ms
            ),
        ),
    ];
    let width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
    let value_width = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
    for (label, value, note) in rows {
        if note.is_empty() {
            writeln!(out, "  {label:<width$}  {value:>value_width$}")?;
        } else {
            writeln!(out, "  {label:<width$}  {value:>value_width$}  {DIM}{note}{DIM:#}")?;
        }
    }
    writeln!(out)?;
    let style = crate::style::severity(p.severity).bold();
    if p.sustainable {
        writeln!(
            out,
            "{style}{}: sustainable — {}/s needs {} of {} ports per destination{style:#}",
            p.severity.name().to_uppercase(),
            rate(p.rate_per_destination_per_s),
            thousands(p.ports_needed),
            thousands(p.ports_available)
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{style}CRITICAL: not sustainable — {} ports needed, {} available. The smallest change of each kind:{style:#}",
        thousands(p.ports_needed),
        thousands(p.ports_available)
    )?;
    for remedy in &p.remedies {
        let mark = if remedy.sufficient { "enough " } else { "not enough" };
        writeln!(out, "  {BOLD}{mark:<10}{BOLD:#}  {}", remedy.change)?;
        writeln!(out, "              {DIM}{}{DIM:#}", remedy.detail)?;
    }
    Ok(())
}
