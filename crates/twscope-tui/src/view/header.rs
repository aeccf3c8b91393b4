//! The header: where, the kernel's settings, sockets by state, the
//! refresh's own cost, and the verdict.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use twscope_core::text::thousands;

use super::{percent, printable, Theme};
use crate::app::{App, Screen};

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let mut lines = Vec::with_capacity(4);
    let stretched = app
        .snapshot
        .as_ref()
        .map(|s| s.cost)
        .filter(|c| c.stretched(app.interval_s));
    let refresh = if app.paused {
        Span::styled(" PAUSED (p resumes) ", theme.selected())
    } else if let Some(cost) = stretched {
        Span::styled(
            format!(
                "every {:.1} s, not {}",
                cost.next_after(app.interval_s),
                trim(app.interval_s)
            ),
            theme.severity(twscope_core::Severity::Warning),
        )
    } else {
        Span::styled(format!("every {} s", trim(app.interval_s)), theme.dim())
    };
    let sort = Span::styled(format!(" · sort: {}", app.sort.name()), theme.dim());
    let Some(snapshot) = &app.snapshot else {
        lines.push(Line::from(vec![
            Span::styled("twscope top", theme.heading()),
            Span::raw(" · taking the first census… "),
            refresh,
        ]));
        if let Some(error) = app.refresh_error() {
            lines.push(Line::from(Span::styled(
                printable(error),
                theme.severity(twscope_core::Severity::Critical),
            )));
        }
        frame.render_widget(Paragraph::new(lines), area);
        return;
    };
    let cost = snapshot.cost;
    let mut cost_text = format!(
        "census {} sockets: {:.0} ms, {:.0} ms CPU, {} of a core",
        thousands(cost.sockets),
        cost.wall_ms,
        cost.cpu_ms,
        percent(cost.core_share(app.interval_s))
    );
    if stretched.is_some() {
        // The interval was stretched so that this is `MAX_CORE_SHARE`.
        cost_text.push_str(", capped");
    }

    if app.screen == Screen::Namespaces {
        let listed = snapshot.namespaces.len();
        lines.push(Line::from(vec![
            Span::styled("twscope top", theme.heading()),
            Span::raw(format!(
                " · all namespaces: {listed} with TCP sockets, {} idle, of {} found · ",
                snapshot.idle, snapshot.found
            )),
            refresh,
            sort,
        ]));
        lines.push(Line::from(Span::styled(cost_text, theme.dim())));
        if let Some(missing) = &snapshot.missing {
            lines.push(Line::from(Span::styled(
                format!("incomplete: {}", printable(missing)),
                theme.severity(twscope_core::Severity::Warning),
            )));
        }
        frame.render_widget(Paragraph::new(lines), area);
        return;
    }

    let Some(ns) = app.shown_namespace() else {
        lines.push(Line::from(vec![
            Span::styled("twscope top", theme.heading()),
            Span::raw(" · the namespace is gone"),
        ]));
        frame.render_widget(Paragraph::new(lines), area);
        return;
    };
    let Some(status) = ns.status() else {
        lines.push(Line::from(vec![
            Span::styled("twscope top", theme.heading()),
            Span::raw(format!(" · {} · ", printable(&ns.label()))),
            refresh,
        ]));
        lines.push(Line::from(Span::raw(match &ns.node.error {
            Some(error) => format!("cannot read it: {}", printable(error)),
            None => "no TCP socket in it".to_string(),
        })));
        frame.render_widget(Paragraph::new(lines), area);
        return;
    };
    let where_ = if snapshot.all {
        format!("namespace {} (inode {})", printable(&ns.label()), ns.inode())
    } else {
        format!("netns {} (inode {})", printable(&status.netns.name), status.netns.inode)
    };
    lines.push(Line::from(vec![
        Span::styled("twscope top", theme.heading()),
        Span::raw(format!(
            " · {} · {where_} · kernel {} · ",
            printable(&status.host),
            printable(&status.kernel)
        )),
        refresh,
        sort,
    ]));
    let e = &status.ephemeral;
    let s = &status.settings;
    lines.push(Line::from(Span::raw(format!(
        "ports {}–{}: {} usable per destination · tw_reuse {} · timestamps {} · max_tw_buckets {} · TIME_WAIT held {:.1} s",
        e.low,
        e.high,
        thousands(u64::from(e.available)),
        s.tcp_tw_reuse,
        s.tcp_timestamps,
        thousands(s.tcp_max_tw_buckets),
        status.time_wait_lifetime.mean_s
    ))));
    let mut states: Vec<(twscope_core::TcpState, u64)> = status.states.iter().filter(|&(_, n)| n > 0).collect();
    states.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    let mut spans = vec![Span::styled("TCP ", theme.heading())];
    if states.is_empty() {
        spans.push(Span::raw("no socket"));
    }
    for (state, n) in states {
        spans.push(Span::raw(format!("{} {}  ", state.name(), thousands(n))));
    }
    spans.push(Span::styled(format!("· {cost_text}"), theme.dim()));
    lines.push(Line::from(spans));
    lines.push(Line::from(Span::styled(
        printable(&status.verdict.summary),
        theme.severity(status.verdict.severity),
    )));
    frame.render_widget(Paragraph::new(lines), area);
}

/// `2`, `0.5`: an interval without trailing zeros.
fn trim(seconds: f64) -> String {
    let text = format!("{seconds:.1}");
    text.strip_suffix(".0").unwrap_or(&text).to_string()
}
