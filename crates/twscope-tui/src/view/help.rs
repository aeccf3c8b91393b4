//! The help screen (`?`): the keys, and what each column means.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use super::Theme;

const KEYS: [(&str, &str); 11] = [
    ("q  Ctrl-C", "quit (the terminal is restored)"),
    ("s", "sort: risk → TIME_WAIT → in use → close rate → destination"),
    (
        "/",
        "filter destinations (namespaces on the list) by text; Enter keeps, Esc clears",
    ),
    ("p  space", "pause: the screen holds still and no census is taken"),
    ("n", "next namespace (--netns all)"),
    ("Enter  →", "open the selected namespace's destinations"),
    ("Esc  ←", "clear the filter, then back to the namespace list"),
    (
        "t",
        "trace panel: who opens connections, who gets EADDRNOTAVAIL (eBPF, root)",
    ),
    ("↑ ↓  PgUp PgDn", "move the selection or scroll"),
    ("r", "refresh now"),
    ("?", "this help; any key closes it"),
];

const COLUMNS: [(&str, &str); 9] = [
    (
        "TIME_WAIT",
        "sockets to it in TIME_WAIT: each holds a source port for 60 s",
    ),
    (
        "ESTAB, MIN–MAX",
        "ESTABLISHED now and over 5 min; ↕: it swings, as a client per request does",
    ),
    ("IN USE", "its client sockets in any state, each on a port"),
    (
        "UTIL",
        "the share of its port budget connect() cannot use (colour: severity)",
    ),
    (
        "CLOSE/s",
        "connections closed into TIME_WAIT per second over the rate window",
    ),
    (
        "LAST 5 MIN",
        "the close rate over the last 5 minutes, scaled to its peak",
    ),
    ("MAX/s", "the close rate the budget sustains forever"),
    (
        "EXHAUSTS",
        "when the budget runs out at this rate: now, in N s, limit, lvl N%, never",
    ),
    ("SEV", "ok, warning, critical"),
];

pub(super) fn draw(frame: &mut Frame, area: Rect, theme: Theme) {
    let mut lines = Vec::new();
    for (title, rows) in [("Keys", &KEYS[..]), ("Columns", &COLUMNS[..])] {
        lines.push(Line::from(Span::styled(title, theme.heading())));
        for (name, what) in rows {
            lines.push(Line::from(vec![
                Span::styled(format!("  {name:<16}"), theme.heading()),
                Span::raw(*what),
            ]));
        }
        lines.push(Line::default());
    }
    lines.push(Line::from(Span::styled("Press any key to close.", theme.dim())));
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(" twscope top: help ", theme.heading()));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).block(block), area);
}
