//! The trace panel (`t`): who opened connections over the last interval,
//! who failed, and the newest EADDRNOTAVAIL seen since the panel opened.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table};
use ratatui::Frame;
use twscope_core::text::{rate, thousands};
use twscope_core::trace::EADDRNOTAVAIL;
use twscope_core::Severity;

use super::{printable, Theme};
use crate::app::{App, Screen};
use crate::collect::TraceState;

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let block = Block::default().borders(Borders::TOP).title(Span::styled(
        " Processes opening connections (eBPF trace; t hides) ",
        theme.heading(),
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let (report, last) = match &app.trace {
        TraceState::Off => return message(frame, inner, "attaching the tracer…", theme),
        TraceState::Starting => {
            return message(
                frame,
                inner,
                "tracing: the first interval ends at the next refresh…",
                theme,
            )
        }
        TraceState::Unavailable(why) => {
            let text = format!("trace unavailable: {}", printable(why));
            frame.render_widget(
                Paragraph::new(Span::styled(text, theme.severity(Severity::Warning)))
                    .wrap(ratatui::widgets::Wrap { trim: true }),
                inner,
            );
            return;
        }
        TraceState::Window {
            report,
            last_addr_not_available,
        } => (report, last_addr_not_available),
    };
    // The processes of the namespace shown (all of them on the list).
    let netns = match app.screen {
        Screen::Destinations => app.shown_namespace().map(|n| n.inode()),
        Screen::Namespaces => None,
    };
    let processes: Vec<_> = report
        .processes
        .iter()
        .filter(|p| netns.is_none_or(|n| n == p.netns))
        .collect();
    let [table_area, last_area] =
        ratatui::layout::Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    let header = Row::new([
        "PID",
        "PROCESS",
        "CONTAINER",
        "  OPENED/s",
        "   TW LEFT/s",
        " FAILED/s",
        "EADDRNOTAVAIL",
        "POOL",
    ])
    .style(theme.heading());
    let rows: Vec<Row> = processes
        .iter()
        .take(usize::from(table_area.height.saturating_sub(1)))
        .map(|p| {
            let failing = p.addr_not_available() > 0;
            Row::new(vec![
                p.pid.to_string(),
                printable(&p.comm),
                printable(p.container.as_deref().unwrap_or("")),
                format!("{:>10}", rate(p.connects_per_s())),
                format!("{:>12}", rate(p.time_wait_left_per_s())),
                format!("{:>9}", rate(p.failures_per_s())),
                format!("{:>13}", thousands(p.addr_not_available())),
                if p.pool_bypass {
                    "bypassed".into()
                } else {
                    String::new()
                },
            ])
            .style(if failing {
                theme.severity(Severity::Critical)
            } else if p.pool_bypass {
                theme.severity(Severity::Warning)
            } else {
                ratatui::style::Style::new()
            })
        })
        .collect();
    let widths = [
        Constraint::Length(8),
        Constraint::Length(16),
        Constraint::Fill(1),
        Constraint::Length(10),
        Constraint::Length(12),
        Constraint::Length(9),
        Constraint::Length(13),
        Constraint::Length(8),
    ];
    if rows.is_empty() {
        message(
            frame,
            table_area,
            &format!("no connection opened in the last {:.1} s", report.duration_s),
            theme,
        );
    } else {
        frame.render_widget(Table::new(rows, widths).header(header).column_spacing(1), table_area);
    }
    let line = match last {
        Some((failure, at_s)) => {
            let ago = (app.at_s - at_s).max(0.0);
            Line::from(vec![
                Span::styled(format!("last {EADDRNOTAVAIL}: "), theme.severity(Severity::Critical)),
                Span::raw(format!(
                    "{} ago, pid {} ({}) → {} ",
                    ago_text(ago),
                    failure.pid,
                    printable(&failure.comm),
                    twscope_core::status::endpoint(&failure.addr.to_string(), failure.port)
                )),
                Span::styled(
                    match report.verdict.failing.len() {
                        0 => "· none in the last interval".to_string(),
                        1 => "· 1 process failing in the last interval".to_string(),
                        n => format!("· {} processes failing in the last interval", thousands(n as u64)),
                    },
                    theme.dim(),
                ),
            ])
        }
        None => Line::from(Span::styled(
            format!("no {EADDRNOTAVAIL} since the panel opened"),
            theme.dim(),
        )),
    };
    let mut line = line;
    if report.losses.total() > 0 {
        // Never silently lost: the kernel half's maps were full.
        line.push_span(Span::styled(
            format!(
                " · not recorded: {} events, {} flows, {} connections",
                thousands(report.losses.events_dropped),
                thousands(report.losses.flows_full),
                thousands(report.losses.sockets_full)
            ),
            theme.severity(Severity::Warning),
        ));
    }
    frame.render_widget(Paragraph::new(line), last_area);
}

fn message(frame: &mut Frame, area: Rect, text: &str, theme: Theme) {
    frame.render_widget(Paragraph::new(Span::styled(text.to_string(), theme.dim())), area);
}

/// `4 s`, `3 min`.
fn ago_text(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else {
        format!("{:.0} min", seconds / 60.0)
    }
}
