//! The one mapping from severity to colour every text view uses. Styles are
//! ANSI; `anstream` strips them when stdout is not a terminal or `NO_COLOR`
//! is set.

use anstyle::{AnsiColor, Style};
use twscope_core::doctor::Level;
use twscope_core::Severity;

/// Bold, for headings.
pub const BOLD: Style = Style::new().bold();
/// Dimmed, for asides.
pub const DIM: Style = Style::new().dimmed();

/// Green, yellow, red.
pub fn severity(severity: Severity) -> Style {
    let color = match severity {
        Severity::Ok => AnsiColor::Green,
        Severity::Warning => AnsiColor::Yellow,
        Severity::Critical => AnsiColor::Red,
    };
    Style::new().fg_color(Some(color.into()))
}

/// A finding's level: info cyan, then as [`severity`].
pub fn level(level: Level) -> Style {
    match level {
        Level::Info => Style::new().fg_color(Some(AnsiColor::Cyan.into())),
        Level::Warning => severity(Severity::Warning),
        Level::Critical => severity(Severity::Critical),
    }
}

pub use twscope_core::text::printable;
