//! One namespace's destinations, most at risk first, and its inbound
//! TIME_WAIT per listening port.

use ratatui::layout::Alignment;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;
use twscope_core::history::Trend;
use twscope_core::status::Destination;
use twscope_core::text::{rate, thousands};

use super::{percent, Theme};
use crate::app::App;

/// A column: its title, width (0: what is left, for the sparkline), and how
/// it shows a destination.
struct Column {
    title: &'static str,
    width: u16,
    right: bool,
    cell: fn(&Destination, Option<&Trend>, u16, Theme) -> Line<'static>,
}

/// Every column in display order, with the order they are given up in when
/// the terminal is narrow (the lowest priority goes first).
const COLUMNS: [(u8, Column); 11] = [
    (
        0,
        Column {
            title: "DESTINATION",
            width: 23,
            right: false,
            cell: |d, _, _, _| Line::from(d.endpoint()),
        },
    ),
    (
        1,
        Column {
            title: "TIME_WAIT",
            width: 9,
            right: true,
            cell: |d, _, _, _| Line::from(thousands(d.time_wait)),
        },
    ),
    (
        5,
        Column {
            title: "ESTAB",
            width: 7,
            right: true,
            cell: |d, _, _, _| Line::from(thousands(d.established)),
        },
    ),
    (
        6,
        Column {
            title: "MIN–MAX",
            width: 13,
            right: true,
            cell: range_cell,
        },
    ),
    (
        7,
        Column {
            title: "IN USE",
            width: 7,
            right: true,
            cell: |d, _, _, _| Line::from(thousands(d.in_use)),
        },
    ),
    (
        2,
        Column {
            title: "UTIL",
            width: 12,
            right: false,
            cell: bar_cell,
        },
    ),
    (
        4,
        Column {
            title: "CLOSE/s",
            width: 7,
            right: true,
            cell: |d, _, _, _| Line::from(rate(d.close_rate_per_s)),
        },
    ),
    (
        8,
        Column {
            title: "LAST 5 MIN",
            width: 0,
            right: false,
            cell: sparkline_cell,
        },
    ),
    (
        9,
        Column {
            title: "MAX/s",
            width: 7,
            right: true,
            cell: |d, _, _, _| Line::from(rate(d.max_rate_per_s)),
        },
    ),
    (
        3,
        Column {
            title: "EXHAUSTS",
            width: 8,
            right: true,
            cell: |d, _, _, _| Line::from(d.outlook.short()),
        },
    ),
    (
        10,
        Column {
            title: "SEV",
            width: 4,
            right: false,
            cell: |d, _, _, t| {
                Line::from(Span::styled(
                    d.severity.name().get(..4).unwrap_or(d.severity.name()).to_string(),
                    t.severity(d.severity),
                ))
            },
        },
    ),
];

/// The sparkline's narrowest and widest.
const SPARK_MIN: u16 = 10;
const SPARK_MAX: u16 = 30;

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let inbound = app
        .status()
        .map(|s| s.inbound.iter().filter(|i| i.time_wait > 0).count())
        .unwrap_or(0);
    let [table_area, inbound_area] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(if inbound > 0 { 1 } else { 0 })]).areas(area);
    let rows = app.destinations();
    let title = match app.status() {
        Some(s) if app.filter.is_empty() => format!(" Destinations ({}) ", s.destinations.len()),
        Some(s) => format!(
            " Destinations ({} of {} match /{}) ",
            rows.len(),
            s.destinations.len(),
            super::printable(&app.filter)
        ),
        None => " Destinations ".to_string(),
    };
    let block = Block::default()
        .borders(Borders::TOP)
        .title(Span::styled(title, theme.heading()));

    // The columns that fit, in display order; the sparkline takes the rest.
    let inner = block.inner(table_area).width;
    let mut chosen: Vec<&(u8, Column)> = COLUMNS.iter().collect();
    chosen.sort_by_key(|(priority, _)| *priority);
    let mut used = 0u16;
    let mut keep = Vec::new();
    for (priority, column) in chosen {
        let width = if column.width == 0 { SPARK_MIN } else { column.width };
        if used + width < inner {
            used += width + 1;
            keep.push(*priority);
        }
    }
    let spark = if keep.contains(&8) {
        (inner - used + SPARK_MIN).min(SPARK_MAX)
    } else {
        0
    };
    let shown: Vec<&Column> = COLUMNS
        .iter()
        .filter(|(p, _)| keep.contains(p))
        .map(|(_, c)| c)
        .collect();
    let widths: Vec<Constraint> = shown
        .iter()
        .map(|c| Constraint::Length(if c.width == 0 { spark } else { c.width }))
        .collect();
    let header = Row::new(shown.iter().map(|c| align(Line::from(c.title), c.right))).style(theme.heading());
    let body: Vec<Row> = rows
        .iter()
        .skip(app.scroll)
        .map(|(d, trend)| {
            Row::new(
                shown
                    .iter()
                    .map(|c| align((c.cell)(d, trend.as_ref(), spark, theme), c.right)),
            )
            .style(if d.severity == twscope_core::Severity::Ok {
                ratatui::style::Style::new()
            } else {
                theme.severity(d.severity)
            })
        })
        .collect();
    let empty = body.is_empty();
    frame.render_widget(
        Table::new(body, widths).header(header).column_spacing(1).block(block),
        table_area,
    );
    if empty {
        let text = match app.status() {
            Some(_) if !app.filter.is_empty() => "no destination matches the filter (Esc clears it)",
            Some(_) => "no outbound connection: nothing spends ephemeral ports here",
            None => "",
        };
        let [_, message] = Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(table_area);
        frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), message);
    }
    if inbound > 0 {
        draw_inbound(frame, inbound_area, app, theme);
    }
}

/// Numbers and their titles to the right, text to the left.
fn align(line: Line<'static>, right: bool) -> Cell<'static> {
    Cell::from(line.alignment(if right { Alignment::Right } else { Alignment::Left }))
}

/// `18–20`, or `3–38 ↕` when it swings (what a pool does not do).
fn range_cell(_: &Destination, trend: Option<&Trend>, _: u16, theme: Theme) -> Line<'static> {
    let Some(t) = trend else {
        return Line::from("–");
    };
    let range = format!("{}–{}", thousands(t.established_min), thousands(t.established_max));
    if t.established_fluctuates() {
        Line::from(vec![
            Span::raw(range),
            Span::styled(" ↕", theme.severity(twscope_core::Severity::Warning)),
        ])
    } else {
        Line::from(range)
    }
}

/// `██████░░ 82%`: the share of the budget `connect()` cannot use.
fn bar_cell(d: &Destination, _: Option<&Trend>, _: u16, theme: Theme) -> Line<'static> {
    const CELLS: usize = 7;
    let filled = ((d.utilization.clamp(0.0, 1.0) * CELLS as f64).round() as usize).min(CELLS);
    Line::from(vec![
        Span::styled("█".repeat(filled), theme.severity(d.severity)),
        Span::styled("░".repeat(CELLS - filled), theme.dim()),
        Span::raw(format!("{:>5}", percent(d.utilization))),
    ])
}

/// The close rate over the last minutes, one block per slice of the span,
/// scaled to the destination's own peak (blank before the history began).
fn sparkline_cell(_: &Destination, trend: Option<&Trend>, width: u16, theme: Theme) -> Line<'static> {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let Some(trend) = trend else {
        return Line::from("");
    };
    let peak = trend.close_rate_peak();
    let text: String = trend
        .close_rate_bins(usize::from(width))
        .into_iter()
        .map(|bin| match bin {
            None => ' ',
            Some(_) if peak <= 0.0 => BLOCKS[0],
            Some(v) => BLOCKS[((v / peak * 7.0).round() as usize).min(7)],
        })
        .collect();
    Line::from(Span::styled(text, theme.dim()))
}

/// `inbound TIME_WAIT :80 12,003 · :443 201`: server-side TIME_WAIT holds
/// no ephemeral port, but it is what `ss` shows first.
fn draw_inbound(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let Some(status) = app.status() else { return };
    let mut spans = vec![Span::styled("inbound TIME_WAIT by listening port: ", theme.heading())];
    let ports: Vec<String> = status
        .inbound
        .iter()
        .filter(|i| i.time_wait > 0)
        .take(8)
        .map(|i| format!(":{} {}", i.port, thousands(i.time_wait)))
        .collect();
    spans.push(Span::raw(ports.join(" · ")));
    spans.push(Span::styled(" (no ephemeral port held)", theme.dim()));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
