//! `--netns all`: every namespace of the node with TCP sockets, most pressed
//! first, each with its worst destination; Enter drills in.

use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Row, Table, TableState};
use ratatui::Frame;
use twscope_core::text::thousands;
use twscope_core::TcpState;

use super::{percent, printable, Theme};
use crate::app::App;

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let namespaces = app.namespaces();
    let title = format!(" Namespaces ({}) ", namespaces.len());
    let header = Row::new([
        "NAMESPACE",
        "PROCESSES",
        "  SOCKETS",
        "TIME_WAIT",
        "  ESTAB",
        "WORST DESTINATION",
        " UTIL",
        "EXHAUSTS",
        "SEV",
    ])
    .style(theme.heading());
    let rows: Vec<Row> = namespaces
        .iter()
        .map(|ns| {
            let processes = {
                let mut names: Vec<&str> = ns.node.identity.processes.iter().map(|p| p.comm.as_str()).collect();
                names.dedup();
                let first = names.iter().take(2).copied().collect::<Vec<_>>().join(",");
                match names.len() {
                    0..=2 => first,
                    n => format!("{first} +{}", n - 2),
                }
            };
            let (sockets, time_wait, established) = ns.status().map_or((0, 0, 0), |s| {
                (
                    s.dump.sockets,
                    s.states.get(TcpState::TimeWait),
                    s.states.get(TcpState::Established),
                )
            });
            let (dest, util, eta) = match (ns.node.worst_destination(), &ns.node.error) {
                (_, Some(error)) => (
                    format!("unreadable: {}", printable(error)),
                    String::new(),
                    String::new(),
                ),
                (Some(d), None) => (d.endpoint(), percent(d.utilization), d.outlook.short()),
                (None, None) => ("no outbound".to_string(), String::new(), String::new()),
            };
            let severity = ns.node.severity();
            Row::new(vec![
                printable(&ns.label()),
                printable(&processes),
                format!("{:>9}", thousands(sockets)),
                format!("{:>9}", thousands(time_wait)),
                format!("{:>7}", thousands(established)),
                dest,
                format!("{util:>5}"),
                format!("{eta:>8}"),
                severity.name().get(..4).unwrap_or(severity.name()).to_string(),
            ])
            .style(theme.severity(severity))
        })
        .collect();
    let widths = [
        Constraint::Fill(2),
        Constraint::Fill(1),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Fill(2),
        Constraint::Length(5),
        Constraint::Length(8),
        Constraint::Length(4),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(1)
        .row_highlight_style(theme.selected())
        .block(
            Block::default()
                .borders(Borders::TOP)
                .title(Span::styled(title, theme.heading())),
        );
    let mut state = TableState::default().with_selected((!namespaces.is_empty()).then_some(app.cursor));
    frame.render_stateful_widget(table, area, &mut state);
}
