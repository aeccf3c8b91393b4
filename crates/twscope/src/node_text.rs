//! `--netns all`: the node on one screen (status), the checklist per
//! namespace (doctor), and their JSON (`{"namespaces": […]}`).

use std::fmt::Write;

use serde_json::{json, Value};
use twscope_core::node::{NamespaceStatus, Node};
use twscope_core::status::{Selection, Status};
use twscope_core::text::thousands;
use twscope_core::Severity;
use twscope_core::{diagnose, Report};

use crate::style::{printable, severity as severity_style, BOLD, DIM};

/// How many processes a text row names.
const PROCESSES_SHOWN: usize = 2;

/// The whole node as `{"namespaces": [...], ...}`: each element is the
/// single-namespace `status --json` object for `selection`, with `netns`
/// replaced by the namespace's identity, or `{netns, error}`.
pub fn status_json(node: &Node, selection: &Selection) -> serde_json::Result<Value> {
    let mut out = node_json(node, |status| serde_json::to_value(status.report(selection)))?;
    out["severity"] = json!(node.severity().name());
    Ok(out)
}

/// `doctor --netns all --json`: `{"namespaces": [{netns, findings, worst}], ...}`.
pub fn doctor_json(node: &Node) -> serde_json::Result<Value> {
    let mut out = node_json(node, |status| serde_json::to_value(diagnose(status)))?;
    let worst = doctor_reports(node).iter().filter_map(|(_, r)| r.worst).max();
    out["worst"] = json!(worst.map_or("ok", |l| l.name()));
    Ok(out)
}

/// The node's counts, and `namespaces`: what `view` makes of each census,
/// with `netns` (the identity) and `error` added.
fn node_json(node: &Node, view: impl Fn(&Status) -> serde_json::Result<Value>) -> serde_json::Result<Value> {
    let namespaces = node
        .namespaces
        .iter()
        .map(|n| {
            let mut element = match &n.status {
                Some(status) => view(status)?,
                None => json!({}),
            };
            element["netns"] = serde_json::to_value(&n.identity)?;
            if let Some(error) = &n.error {
                element["error"] = json!(error);
            }
            Ok(element)
        })
        .collect::<serde_json::Result<Vec<Value>>>()?;
    let mut out = serde_json::to_value(node)?;
    out["namespaces"] = Value::Array(namespaces);
    Ok(out)
}

/// Each namespace's checklist.
pub fn doctor_reports(node: &Node) -> Vec<(&NamespaceStatus, Report)> {
    node.namespaces
        .iter()
        .filter_map(|n| Some((n, diagnose(n.status.as_ref()?))))
        .collect()
}

/// The container column: runtime and short id, else the pod's UID.
fn who(n: &NamespaceStatus) -> String {
    let id = &n.identity;
    match (&id.container, &id.pod) {
        (Some(c), _) => format!(
            "{} {}",
            c.runtime.as_deref().unwrap_or("container"),
            twscope_core::node::identity::short_id(&c.id)
        ),
        (None, Some(pod)) => format!("pod {}", pod.uid.get(..8).unwrap_or(&pod.uid)),
        (None, None) => String::new(),
    }
}

fn processes(n: &NamespaceStatus) -> String {
    let p = &n.identity.processes;
    let mut text: Vec<String> = p
        .iter()
        .take(PROCESSES_SHOWN)
        .map(|p| format!("{} {}", p.pid, printable(&p.comm)))
        .collect();
    if p.len() > PROCESSES_SHOWN {
        text.push(format!("+{}", p.len() - PROCESSES_SHOWN));
    }
    if text.is_empty() {
        "(mount only)".to_string()
    } else {
        text.join(", ")
    }
}

/// One row per namespace, most pressed first, then the worst one's verdict.
pub fn render_status(node: &Node, host: &str, kernel: &str) -> String {
    let mut out = String::new();
    let _ = write_status(&mut out, node, host, kernel);
    out
}

fn write_status(out: &mut String, node: &Node, host: &str, kernel: &str) -> std::fmt::Result {
    let listed = node.namespaces.len();
    writeln!(
        out,
        "{BOLD}twscope status{BOLD:#} · host {host} · kernel {kernel} · {} network namespaces: {listed} listed, {} without TCP sockets",
        thousands(node.found as u64),
        thousands(node.idle as u64),
    )?;
    writeln!(out)?;
    let header = [
        "NAMESPACE",
        "CONTAINER",
        "PROCESSES",
        "RANGE",
        "TIME_WAIT",
        "WORST DESTINATION",
        "UTIL",
        "RUNS OUT",
        "SEVERITY",
    ];
    let rows: Vec<([String; 9], Severity)> = node
        .namespaces
        .iter()
        .map(|n| {
            let (range, tw, dest, util, outlook) = match (&n.status, n.worst_destination()) {
                (Some(s), d) => (
                    format!("{}–{}", s.settings.port_range_low, s.settings.port_range_high),
                    thousands(s.states.get(twscope_core::TcpState::TimeWait)),
                    d.map_or("-".to_string(), |d| d.endpoint()),
                    d.map_or("-".to_string(), |d| format!("{:.0}%", d.utilization * 100.0)),
                    d.map_or("-".to_string(), |d| d.outlook.short()),
                ),
                (None, _) => Default::default(),
            };
            let severity = match &n.error {
                Some(_) => "error".to_string(),
                None if n.status.is_none() => "idle".to_string(),
                None => n.severity().name().to_string(),
            };
            (
                [
                    printable(&n.identity.label()),
                    who(n),
                    processes(n),
                    range,
                    tw,
                    dest,
                    util,
                    outlook,
                    severity,
                ],
                n.severity(),
            )
        })
        .collect();
    let mut widths = header.map(str::len);
    for (row, _) in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let right = [false, false, false, false, true, false, true, false, false];
    let line = |cells: &[String]| -> String {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if right[i] {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                if i + 1 < cells.len() {
                    text.push_str(&" ".repeat(pad));
                }
            }
            if i + 1 < cells.len() {
                text.push_str("  ");
            }
        }
        text
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    writeln!(out, "{BOLD}{}{BOLD:#}", line(&header))?;
    for (row, severity) in &rows {
        let style = severity_style(*severity);
        writeln!(out, "{style}{}{style:#}", line(row))?;
    }
    if rows.is_empty() {
        writeln!(out, "{DIM}no namespace has a TCP socket{DIM:#}")?;
    }
    for n in node.namespaces.iter().filter(|n| n.error.is_some()) {
        writeln!(
            out,
            "{DIM}{}: {}{DIM:#}",
            printable(&n.identity.label()),
            printable(n.error.as_deref().unwrap_or_default())
        )?;
    }
    writeln!(out)?;
    match node.namespaces.iter().find(|n| n.status.is_some()) {
        Some(worst) if worst.severity() > Severity::Ok => {
            let status = worst.status.as_ref().expect("has a status");
            let style = severity_style(worst.severity());
            writeln!(
                out,
                "{style}{} (netns inode {}): {}{style:#}",
                printable(&worst.identity.label()),
                worst.identity.inode,
                status.verdict.summary
            )?;
        }
        _ => writeln!(out, "OK: no namespace is short of source ports")?,
    }
    Ok(())
}

/// Per namespace with findings: a title line and the doctor's report.
pub fn render_doctor(node: &Node, show_remedies: bool) -> String {
    let mut out = String::new();
    let reports = doctor_reports(node);
    let _ = writeln!(
        out,
        "{BOLD}twscope doctor --netns all{BOLD:#} · {} network namespaces: {} examined, {} without TCP sockets",
        thousands(node.found as u64),
        reports.len(),
        thousands(node.idle as u64)
    );
    let mut clean = 0;
    for (n, report) in &reports {
        if report.worst.is_none() {
            clean += 1;
            continue;
        }
        let status = n.status.as_ref().expect("diagnosed namespaces have a census");
        let _ = write!(
            out,
            "\n{BOLD}── {} (netns inode {}){BOLD:#}\n",
            printable(&n.identity.label()),
            n.identity.inode
        );
        out.push_str(&crate::doctor_text::render_with(status, report, show_remedies));
    }
    let _ = writeln!(out, "\n{clean} namespaces with nothing to report");
    out
}
