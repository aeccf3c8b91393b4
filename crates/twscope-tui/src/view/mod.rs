//! Drawing: the [`App`] state into a frame. Nothing here computes a number;
//! every figure is a field or a method of the core's model (or of the
//! history's [`twscope_core::history::Trend`]), and widgets only choose,
//! format and place it.

mod destinations;
mod header;
mod help;
mod namespaces;
mod trace;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;
use twscope_core::doctor::Level;
use twscope_core::Severity;

use crate::app::{App, Screen};
pub(crate) use twscope_core::text::printable;

/// The smallest terminal drawn: below it, a message says so.
pub const MIN_WIDTH: u16 = 80;
/// See [`MIN_WIDTH`].
pub const MIN_HEIGHT: u16 = 16;

/// Colours, or none at all (`NO_COLOR`): emphasis then stays as bold and
/// reverse video, which carry no colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to anything non-empty
    /// (<https://no-color.org>).
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    /// With or without colour.
    pub fn new(color: bool) -> Theme {
        Theme { color }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    /// A severity's colour: green, yellow, red; critical is bold either way.
    pub fn severity(self, severity: Severity) -> Style {
        match severity {
            Severity::Ok => self.fg(Color::Green),
            Severity::Warning => self.fg(Color::Yellow),
            Severity::Critical => self.fg(Color::Red).add_modifier(Modifier::BOLD),
        }
    }

    /// A finding's level.
    pub fn level(self, level: Level) -> Style {
        match level {
            Level::Info => self.fg(Color::Cyan),
            Level::Warning => self.severity(Severity::Warning),
            Level::Critical => self.severity(Severity::Critical),
        }
    }

    /// Headings and column titles.
    pub fn heading(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }

    /// Asides.
    pub fn dim(self) -> Style {
        if self.color {
            Style::new().add_modifier(Modifier::DIM)
        } else {
            Style::new()
        }
    }

    /// The selected row and the key bar's keys.
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App, theme: Theme) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(frame, area);
        return;
    }
    if app.help {
        help::draw(frame, area, theme);
        return;
    }
    let trace_height = if app.trace_panel { 8 } else { 0 };
    let [header, body, trace_area, footer] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(6),
        Constraint::Length(trace_height),
        Constraint::Length(2),
    ])
    .areas(area);
    header::draw(frame, header, app, theme);
    match app.screen {
        Screen::Destinations => destinations::draw(frame, body, app, theme),
        Screen::Namespaces => namespaces::draw(frame, body, app, theme),
    }
    if app.trace_panel {
        trace::draw(frame, trace_area, app, theme);
    }
    footer_draw(frame, footer, app, theme);
}

fn too_small(frame: &mut Frame, area: Rect) {
    let text = format!(
        "Terminal too small: {}×{}. twscope top needs at least {MIN_WIDTH}×{MIN_HEIGHT}; enlarge the window, or use `twscope status`. q quits.",
        area.width, area.height
    );
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}

/// The doctor's worst finding (or the refresh's error), then the keys.
fn footer_draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let [first, keys] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let line = if let Some(error) = app.refresh_error() {
        Line::from(vec![
            Span::styled("refresh failed: ", theme.severity(Severity::Critical)),
            Span::raw(printable(error)),
            Span::styled(" (showing the last good census)", theme.dim()),
        ])
    } else if let Some(message) = &app.message {
        Line::from(Span::raw(message.clone()))
    } else {
        match (app.screen, app.shown_namespace().and_then(|n| n.worst_finding.as_ref())) {
            (Screen::Destinations, Some(f)) => Line::from(vec![
                Span::styled(format!("{} ", f.severity.name()), theme.level(f.severity)),
                Span::styled(format!("{}: ", f.id.as_str()), theme.dim()),
                Span::raw(f.title.clone()),
                Span::styled("  (twscope doctor explains)", theme.dim()),
            ]),
            (Screen::Destinations, None) => Line::from(Span::styled("doctor: no finding", theme.dim())),
            (Screen::Namespaces, _) => Line::from(Span::styled(
                "Enter or n: open a namespace's destinations · Esc: back to this list",
                theme.dim(),
            )),
        }
    };
    frame.render_widget(Paragraph::new(line), first);

    let mut spans = Vec::new();
    if app.editing_filter {
        spans.push(Span::styled(" filter ", theme.selected()));
        spans.push(Span::raw(format!(
            " /{}▏ Enter keeps, Esc clears",
            printable(&app.filter)
        )));
    } else {
        let pause = if app.paused { "resume" } else { "pause" };
        let trace = if app.trace_panel { "hide trace" } else { "trace" };
        for (key, what) in [
            ("q", "quit"),
            ("s", "sort"),
            ("/", "filter"),
            ("p", pause),
            ("n", "namespace"),
            ("t", trace),
            ("?", "help"),
        ] {
            spans.push(Span::styled(format!(" {key} "), theme.selected()));
            spans.push(Span::raw(format!(" {what} ")));
        }
        if !app.filter.is_empty() {
            spans.push(Span::styled(
                format!(" filter: {}", printable(&app.filter)),
                theme.heading(),
            ));
        }
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), keys);
}

/// `82%`.
pub(crate) fn percent(fraction: f64) -> String {
    format!("{:.0}%", fraction * 100.0)
}
