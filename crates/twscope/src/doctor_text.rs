//! The text renderings of `twscope doctor` (the TIME_WAIT checklist, grouped
//! the same way, worst first) and `twscope tune` (current → proposed).

use std::fmt::Write;
use std::path::Path;

use anstyle::Style;
use serde_json::Value;
use twscope_core::doctor::{Group, Language, Level, Remedy, RemedyKind, Report};
use twscope_core::status::Status;
use twscope_core::tune::Change;

use crate::style::BOLD;
use crate::style::DIM;
const WIDTH: usize = 100;

fn level_style(level: Level) -> Style {
    crate::style::level(level).bold()
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
            Value::Array(items) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                    .collect();
                format!("{k} {}", items.join(", "))
            }
            other => format!("{k} {other}"),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// `twscope doctor` as text: the checklist's groups in order, each finding
/// with its evidence, why it matters and its sysctl fix (pointing at `tune`
/// for the persistent and Kubernetes forms), then the verdict. The
/// per-language connection-reuse snippets follow when `show_remedies`
/// (`--remedies`); otherwise one closing line says how to see them. The JSON
/// form always carries every remedy.
pub fn render_with(status: &Status, report: &Report, show_remedies: bool) -> String {
    let header = Header {
        host: &status.host,
        kernel: &status.kernel,
        netns: &status.netns.name,
    };
    let mut out = String::new();
    let _ = write_doctor(&mut out, &header, report, show_remedies);
    out
}

/// What the first line says about where the checklist ran.
struct Header<'a> {
    host: &'a str,
    kernel: &'a str,
    netns: &'a str,
}

const INDENT: &str = "           ";

/// The connection-reuse snippets the report's findings carry, one per
/// language, in [`Language::ALL`] order.
fn snippets(report: &Report) -> Vec<(Language, &Remedy)> {
    let mut found: Vec<(Language, &Remedy)> = Vec::new();
    for remedy in report.findings.iter().flat_map(|f| &f.remedies) {
        if let RemedyKind::Snippet { language } = remedy.kind {
            if !found.iter().any(|(l, _)| *l == language) {
                found.push((language, remedy));
            }
        }
    }
    found.sort_by_key(|(l, _)| *l);
    found
}

/// `Java, Go and Rust`.
fn language_list(languages: &[Language]) -> String {
    let names: Vec<&str> = languages.iter().map(|l| l.name()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

fn write_doctor(out: &mut String, header: &Header<'_>, report: &Report, show_remedies: bool) -> std::fmt::Result {
    let count = |level| report.findings.iter().filter(|f| f.severity == level).count();
    writeln!(
        out,
        "{BOLD}twscope doctor{BOLD:#} · host {} · kernel {} · netns {} · {} finding{}: {} critical, {} warning, {} info",
        header.host,
        header.kernel,
        header.netns,
        report.findings.len(),
        if report.findings.len() == 1 { "" } else { "s" },
        count(Level::Critical),
        count(Level::Warning),
        count(Level::Info),
    )?;
    let snippets = snippets(report);
    let languages: Vec<Language> = snippets.iter().map(|(l, _)| *l).collect();
    for group in Group::ALL {
        let findings: Vec<_> = report.findings.iter().filter(|f| f.group == group).collect();
        writeln!(out, "\n{BOLD}{}{BOLD:#}", group.title())?;
        if findings.is_empty() {
            writeln!(out, "  {DIM}✓ nothing found{DIM:#}")?;
            continue;
        }
        for f in findings {
            let style = level_style(f.severity);
            writeln!(
                out,
                "  {style}{:<8}{style:#} {BOLD}{}{BOLD:#}  {}",
                f.severity.name().to_uppercase(),
                f.id,
                f.title
            )?;
            out.push_str(&wrap(&format!("evidence: {}", evidence_text(&f.evidence)), INDENT));
            out.push_str(&wrap(&f.explanation, INDENT));
            // The sysctl form is shown; its persistent and Kubernetes forms
            // are one `tune` away. Snippets are shared by several findings:
            // named here, printed once at the end (or behind --remedies).
            let mut reuse = false;
            for remedy in &f.remedies {
                match remedy.kind {
                    RemedyKind::Sysctl => {
                        writeln!(
                            out,
                            "{INDENT}{BOLD}fix{BOLD:#} {DIM}(to persist: `twscope tune --persist FILE`; in pods: `twscope tune --k8s`){DIM:#}{BOLD}:{BOLD:#}"
                        )?;
                        for line in remedy.text.lines() {
                            writeln!(out, "{INDENT}  {line}")?;
                        }
                    }
                    RemedyKind::SysctlD | RemedyKind::Kubernetes => {}
                    RemedyKind::Application => {
                        out.push_str(&wrap(&format!("fix: {}. {}", remedy.title, remedy.text), INDENT));
                    }
                    RemedyKind::Snippet { .. } => reuse = true,
                }
            }
            if reuse {
                let where_ = if show_remedies { "below" } else { "`--remedies`" };
                writeln!(
                    out,
                    "{INDENT}{BOLD}fix:{BOLD:#} reuse connections in the application ({where_})"
                )?;
            }
        }
    }
    if show_remedies && !snippets.is_empty() {
        writeln!(out, "\n{BOLD}How to reuse connections{BOLD:#}")?;
        for (_, remedy) in &snippets {
            writeln!(out, "  {}", remedy.title)?;
            for line in remedy.text.lines() {
                if line.is_empty() {
                    writeln!(out)?;
                } else {
                    writeln!(out, "    {DIM}{line}{DIM:#}")?;
                }
            }
        }
    }
    writeln!(out)?;
    let verdict = match report.findings.first() {
        None => format!(
            "{}OK: nothing on the checklist needs attention{:#}",
            level_style(Level::Info),
            level_style(Level::Info)
        ),
        Some(worst) => {
            let style = level_style(worst.severity);
            format!(
                "{style}{}: {}{style:#}",
                worst.severity.name().to_uppercase(),
                worst.title
            )
        }
    };
    writeln!(out, "{verdict}")?;
    if !show_remedies && !snippets.is_empty() {
        writeln!(
            out,
            "{DIM}Connection-reuse snippets for {}: twscope doctor --remedies{DIM:#}",
            language_list(&languages)
        )?;
    }
    Ok(())
}

/// `twscope tune` as text: each change as current → proposed with why, then
/// what was done and how to apply, persist or render it for Kubernetes.
pub fn render_tune(status: &Status, changes: &[Change], applied: bool, persisted: Option<&Path>) -> String {
    let mut out = String::new();
    let _ = write_tune(&mut out, status, changes, applied, persisted);
    out
}

fn write_tune(
    out: &mut String,
    status: &Status,
    changes: &[Change],
    applied: bool,
    persisted: Option<&Path>,
) -> std::fmt::Result {
    writeln!(
        out,
        "{BOLD}twscope tune{BOLD:#} · host {} · netns {}",
        status.host, status.netns.name
    )?;
    writeln!(out)?;
    if changes.is_empty() {
        return writeln!(out, "Nothing to change: no system finding calls for a sysctl here.");
    }
    let key_width = changes.iter().map(|c| c.key.len()).max().unwrap_or(0);
    let value_width = changes
        .iter()
        .map(|c| c.current.len() + 3 + c.proposed.len())
        .max()
        .unwrap_or(0);
    for c in changes {
        let value = format!("{} → {}", c.current, c.proposed);
        writeln!(
            out,
            "  {:<key_width$}  {value:<value_width$}  {DIM}{}{DIM:#}",
            c.key, c.why
        )?;
    }
    writeln!(out)?;
    let ns = if status.netns.name == "host" {
        String::new()
    } else {
        format!(" --netns {}", status.netns.name)
    };
    if applied {
        writeln!(
            out,
            "Applied: written to /proc/sys of netns {}. A second `twscope tune{ns}` proposes nothing.",
            status.netns.name
        )?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use twscope_core::doctor::{remedies, Finding, FindingId};

    fn finding(id: FindingId, severity: Level, group: Group, remedies: Vec<Remedy>) -> Finding {
        Finding {
            id,
            severity,
            group,
            title: format!("title of {id}"),
            evidence: [(
                "destinations".to_string(),
                json!(["198.18.0.1:5432", "198.18.0.2:6379"]),
            )]
            .into_iter()
            .collect(),
            explanation: format!("why {id} matters"),
            remedies,
        }
    }

    /// A report like a churning host's: pressure (sysctls and snippets), a
    /// bypass (snippets only), server-side TIME_WAIT (advice).
    fn report() -> Report {
        let mut pressure = remedies::connection_reuse();
        pressure.extend(remedies::sysctls(&[("net.ipv4.tcp_tw_reuse", "1".to_string())]));
        Report::new(vec![
            finding(
                FindingId::PoolBypassSuspected,
                Level::Warning,
                Group::Application,
                remedies::connection_reuse(),
            ),
            finding(
                FindingId::DestinationPressure,
                Level::Critical,
                Group::Diagnosis,
                pressure,
            ),
            finding(
                FindingId::ServerSideTimeWait,
                Level::Info,
                Group::Diagnosis,
                vec![Remedy {
                    kind: RemedyKind::Application,
                    title: "let clients keep connections alive".into(),
                    text: "Enable keep-alive.".into(),
                }],
            ),
        ])
    }

    fn render(report: &Report, show_remedies: bool) -> String {
        let mut out = String::new();
        write_doctor(
            &mut out,
            &Header {
                host: "vm",
                kernel: "6.18.0",
                netns: "test",
            },
            report,
            show_remedies,
        )
        .unwrap();
        anstream::adapter::strip_str(&out).to_string()
    }

    #[test]
    fn findings_come_first_and_snippets_wait_for_remedies() {
        let text = render(&report(), false);
        assert!(
            text.starts_with(
                "twscope doctor · host vm · kernel 6.18.0 · netns test · 3 findings: 1 critical, 1 warning, 1 info\n"
            ),
            "{text}"
        );
        for part in [
            "CRITICAL destination-pressure  title of destination-pressure",
            "evidence: destinations 198.18.0.1:5432, 198.18.0.2:6379",
            "why destination-pressure matters",
            "sysctl -w net.ipv4.tcp_tw_reuse=\"1\"",
            "`twscope tune --k8s`",
            "fix: let clients keep connections alive. Enable keep-alive.",
            "fix: reuse connections in the application (`--remedies`)",
        ] {
            assert!(text.contains(part), "{part} missing:\n{text}");
        }
        // No code: the snippets are behind the flag, and one closing line says so.
        for code in [
            "HikariConfig",
            "psycopg_pool",
            "requests.Session",
            "http.Agent",
            "reqwest::Client",
            "How to reuse connections",
        ] {
            assert!(!text.contains(code), "{code} shown without --remedies:\n{text}");
        }
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[lines.len() - 2], "CRITICAL: title of destination-pressure");
        assert_eq!(
            lines[lines.len() - 1],
            "Connection-reuse snippets for Java, Go, Python, Node.js and Rust: twscope doctor --remedies"
        );
        assert_eq!(
            text.matches("--remedies").count(),
            3,
            "two findings and the closing line:\n{text}"
        );
    }

    #[test]
    fn remedies_shows_each_languages_snippet_once_after_the_findings() {
        let text = render(&report(), true);
        assert!(!text.contains("twscope doctor --remedies"), "{text}");
        assert!(
            text.contains("fix: reuse connections in the application (below)"),
            "{text}"
        );
        let section = text.find("How to reuse connections").expect(&text);
        assert!(section > text.find("Monitoring").unwrap(), "{text}");
        for language in Language::ALL {
            let title = format!("\n  {}: ", language.name());
            assert_eq!(text.matches(&title).count(), 1, "{title:?}:\n{text}");
        }
        // The snippet text as the core wrote it, both schemes mounted.
        assert!(
            text.contains("    session.mount(\"http://\", adapter)\n    session.mount(\"https://\", adapter)\n"),
            "{text}"
        );
        assert!(
            text.trim_end().ends_with("CRITICAL: title of destination-pressure"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.trim_end() == l), "trailing blanks:\n{text}");
    }

    #[test]
    fn no_snippet_no_closing_line() {
        let quiet = Report::new(Vec::new());
        let text = render(&quiet, false);
        assert!(
            text.trim_end()
                .ends_with("OK: nothing on the checklist needs attention"),
            "{text}"
        );
        assert!(!text.contains("--remedies"));
        let system_only = Report::new(vec![finding(
            FindingId::PortRangeNarrow,
            Level::Warning,
            Group::System,
            remedies::sysctls(&[("net.ipv4.ip_local_port_range", "1024 65535".to_string())]),
        )]);
        let text = render(&system_only, false);
        assert!(
            !text.contains("--remedies") && !text.contains("reuse connections"),
            "{text}"
        );
        assert_eq!(render(&system_only, true), text);
        assert_eq!(language_list(&[Language::Go]), "Go");
        assert_eq!(language_list(&[Language::Go, Language::Rust]), "Go and Rust");
    }
}
