//! The text renderings of `twscope doctor` (the seed post's checklist, grouped
//! the same way, worst first) and `twscope tune` (current → proposed).

use std::collections::HashSet;
use std::fmt::Write;
use std::path::Path;

use anstyle::{AnsiColor, Style};
use serde_json::Value;
use twscope_core::doctor::{Group, Level, Report};
use twscope_core::status::Status;
use twscope_core::tune::Change;

const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
const WIDTH: usize = 100;

fn level_style(level: Level) -> Style {
    let color = match level {
        Level::Info => AnsiColor::Cyan,
        Level::Warning => AnsiColor::Yellow,
        Level::Critical => AnsiColor::Red,
    };
    Style::new().fg_color(Some(color.into())).bold()
}

/// Greedy word wrap, each line prefixed with `indent`.
fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > WIDTH {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn evidence_text(evidence: &serde_json::Map<String, Value>) -> String {
    evidence
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k} {s}"),
            Value::Null => format!("{k} none"),
            other => format!("{k} {other}"),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

pub fn render(status: &Status, report: &Report) -> String {
    let mut out = String::new();
    let _ = write_doctor(&mut out, status, report);
    out
}

fn write_doctor(out: &mut String, status: &Status, report: &Report) -> std::fmt::Result {
    let count = |level| report.findings.iter().filter(|f| f.severity == level).count();
    writeln!(
        out,
        "{BOLD}twscope doctor{BOLD:#} · host {} · kernel {} · netns {} · {} finding{}: {} critical, {} warning, {} info",
        status.host,
        status.kernel,
        status.netns.name,
        report.findings.len(),
        if report.findings.len() == 1 { "" } else { "s" },
        count(Level::Critical),
        count(Level::Warning),
        count(Level::Info),
    )?;
    // Sysctl remedies come in three forms: text shows the command and points
    // at `tune` for the other two. Code snippets are long and shared by
    // several findings: listed by name here, printed once at the end.
    let mut snippets: Vec<&twscope_core::doctor::Remedy> = Vec::new();
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    for group in Group::ALL {
        let findings: Vec<_> = report.findings.iter().filter(|f| f.group == group).collect();
        writeln!(out, "\n{BOLD}{}{BOLD:#}", group.title())?;
        if findings.is_empty() {
            writeln!(out, "  {DIM}✓ nothing found{DIM:#}")?;
            continue;
        }
        for f in findings {
            let style = level_style(f.severity);
            writeln!(out, "  {style}{:<8}{style:#} {BOLD}{}{BOLD:#}  {}", f.severity.name().to_uppercase(), f.id, f.title)?;
            out.push_str(&wrap(&format!("evidence: {}", evidence_text(&f.evidence)), "           "));
            out.push_str(&wrap(&f.explanation, "           "));
            let mut code = Vec::new();
            for remedy in &f.remedies {
                match remedy.kind.as_str() {
                    "sysctl.d" | "kubernetes" => {}
                    "sysctl" => {
                        writeln!(out, "           {BOLD}fix:{BOLD:#}")?;
                        for line in remedy.text.lines() {
                            writeln!(out, "             {line}")?;
                        }
                        writeln!(out, "           {DIM}persist with `twscope tune --persist FILE`, pods: `twscope tune --k8s`{DIM:#}")?;
                    }
                    "application" => {
                        out.push_str(&wrap(&format!("fix: {}. {}", remedy.title, remedy.text), "           "));
                    }
                    _ => {
                        code.push(remedy.title.split(':').next().unwrap_or(&remedy.title));
                        if seen.insert((&remedy.kind, &remedy.title)) {
                            snippets.push(remedy);
                        }
                    }
                }
            }
            if !code.is_empty() {
                writeln!(out, "           {BOLD}fix:{BOLD:#} reuse connections — {} (below)", code.join(", "))?;
            }
        }
    }
    if !snippets.is_empty() {
        writeln!(out, "\n{BOLD}How to reuse connections{BOLD:#}")?;
        for remedy in snippets {
            writeln!(out, "  {}", remedy.title)?;
            for line in remedy.text.lines() {
                writeln!(out, "    {DIM}{line}{DIM:#}")?;
            }
        }
    }
    writeln!(out)?;
    let verdict = match report.findings.first() {
        None => format!("{}OK: nothing on the checklist needs attention{:#}", level_style(Level::Info), level_style(Level::Info)),
        Some(worst) => {
            let style = level_style(worst.severity);
            format!("{style}{}: {}{style:#}", worst.severity.name().to_uppercase(), worst.title)
        }
    };
    writeln!(out, "{verdict}")
}

pub fn render_tune(status: &Status, changes: &[Change], applied: bool, persisted: Option<&Path>) -> String {
    let mut out = String::new();
    let _ = write_tune(&mut out, status, changes, applied, persisted);
    out
}

fn write_tune(out: &mut String, status: &Status, changes: &[Change], applied: bool, persisted: Option<&Path>) -> std::fmt::Result {
    writeln!(out, "{BOLD}twscope tune{BOLD:#} · host {} · netns {}", status.host, status.netns.name)?;
    writeln!(out)?;
    if changes.is_empty() {
        return writeln!(out, "Nothing to change: no system finding calls for a sysctl here.");
    }
    let key_width = changes.iter().map(|c| c.key.len()).max().unwrap_or(0);
    let value_width = changes.iter().map(|c| c.current.len() + 3 + c.proposed.len()).max().unwrap_or(0);
    for c in changes {
        let value = format!("{} → {}", c.current, c.proposed);
        writeln!(out, "  {:<key_width$}  {value:<value_width$}  {DIM}{}{DIM:#}", c.key, c.why)?;
    }
    writeln!(out)?;
    let ns = if status.netns.name == "host" { String::new() } else { format!(" --netns {}", status.netns.name) };
    if applied {
        writeln!(out, "Applied: written to /proc/sys of netns {}. A second `twscope tune{ns}` proposes nothing.", status.netns.name)?;
    } else {
        writeln!(out, "Nothing was changed. Apply now:  sudo twscope tune --apply{ns}")?;
    }
    match persisted {
        Some(path) => writeln!(out, "Persisted: {} (load with `sysctl --system`).", path.display()),
        None => writeln!(
            out,
            "Persist across reboots:       sudo twscope tune --persist {}{ns}\nKubernetes pods:              twscope tune --k8s{ns}",
            twscope_core::doctor::remedies::SYSCTL_D_FILE
        ),
    }
}
