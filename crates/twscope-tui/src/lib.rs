//! # twscope-tui
//!
//! `twscope top`: the TIME_WAIT post's `watch -n 5 'ss -tan state time-wait |
//! wc -l; …'` as a live terminal view. Per destination it shows TIME_WAIT,
//! ESTABLISHED with its range over the last minutes (a pool holds steady; a
//! client per request swings), the utilization of the port budget, the
//! close rate with a sparkline, the rate the budget sustains, and when it
//! runs out; with `--netns all`, every namespace of the node to drill into;
//! and, on `t`, who opens connections and who gets EADDRNOTAVAIL (eBPF).
//!
//! Three parts, one job each:
//!
//! ```text
//! collect (thread) ──Update──▶ app (state, keys) ──▶ view (draw)
//!        ▲                          │
//!        └────────Request───────────┘
//! ```
//!
//! - [`collect`] takes the census every interval off the UI thread and
//!   sends it with its own cost ([`Cost`]) and the trace panel's window.
//! - [`app`] is the state and what each key does; it feeds each census to
//!   the core's [`twscope_core::history::History`].
//! - [`view`] draws an [`App`] into a frame: it reads the core's model only.
//!
//! [`run`] wires them to a real terminal (crossterm): raw mode and the
//! alternate screen, restored on `q`, on SIGTERM, SIGHUP and SIGINT, and on
//! panic. Tests drive [`App`] headless into ratatui's `TestBackend`.

#![deny(missing_docs)]

pub mod app;
pub mod collect;
pub mod view;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::event::{self, Event, KeyEventKind};
use twscope_core::status::StatusOptions;

pub use app::{App, Effect, Screen, SortKey};
pub use collect::{Collector, Cost, Namespace, Request, Scope, Snapshot, TraceState, Update};
pub use view::{draw, Theme, MIN_HEIGHT, MIN_WIDTH};

/// What `twscope top` was asked for.
#[derive(Debug, Clone)]
pub struct TopOptions {
    /// Which namespaces: the calling thread's (entered already) or all.
    pub scope: Scope,
    /// Seconds between censuses.
    pub interval: Duration,
    /// The model's knobs (rate window, thresholds).
    pub status: StatusOptions,
    /// Open the trace panel at start.
    pub trace: bool,
}

/// Why `top` could not run.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// Standard input or output is not a terminal.
    #[error("twscope top needs a terminal on standard input and output; for text use `twscope status` (or `watch twscope status`)")]
    NotATerminal,
    /// The terminal could not be set up or drawn on.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

/// Set by SIGTERM, SIGHUP and SIGINT: the loop ends and restores the terminal.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    // An atomic store is async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// How often keys and signals are looked at between refreshes.
const KEY_POLL: Duration = Duration::from_millis(100);

/// Runs `top` on the terminal until `q`, Ctrl-C or a signal; the terminal is
/// restored in every case (a panic's hook restores it too).
pub fn run(options: TopOptions) -> Result<(), TopError> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(TopError::NotATerminal);
    }
    for signal in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        // SAFETY: installs a handler that only stores to an atomic.
        unsafe { libc::signal(signal, request_stop as *const () as libc::sighandler_t) };
    }
    let all = matches!(options.scope, Scope::All);
    let mut app = App::new(options.interval.as_secs_f64(), all);
    let collector = Collector::start(options.scope, options.status, options.interval)?;
    if options.trace {
        app.trace_panel = true;
        collector.send(Request::Trace(true));
    }
    let theme = Theme::from_env();
    let mut terminal = ratatui::try_init()?;
    let result = event_loop(&mut terminal, &mut app, &collector, theme);
    // From here a signal ends the process as it would any program: nothing
    // is left to restore once the terminal is.
    for signal in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        // SAFETY: restores the default disposition.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    // The terminal first: a census under way may take a moment to end (the
    // collection thread is waited for a few seconds at most).
    let restored = ratatui::try_restore();
    drop(terminal);
    drop(collector);
    match result? {
        // Nothing to restore onto: the terminal is gone.
        Ended::HungUp => Ok(()),
        Ended::Quit => Ok(restored?),
    }
}

/// How the loop ended.
enum Ended {
    /// `q`, Ctrl-C or a signal.
    Quit,
    /// The terminal went away (ssh dropped, the tmux window killed).
    HungUp,
}

/// What the terminal (standard input) has for us.
enum Input {
    /// Bytes to read: a key, a mouse report, a reply.
    Ready,
    /// Nothing within the timeout.
    Idle,
    /// Hung up or at end of file.
    HungUp,
}

/// Waits up to `timeout` for the terminal. crossterm's reader spins on end
/// of file instead of reporting it (crossterm issue 793), so a closed
/// terminal is detected here, before crossterm is asked to read.
fn wait_for_input(timeout: Duration) -> std::io::Result<Input> {
    let mut fd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one pollfd we own.
    if unsafe { libc::poll(&mut fd, 1, millis) } < 0 {
        let error = std::io::Error::last_os_error();
        return match error.kind() {
            std::io::ErrorKind::Interrupted => Ok(Input::Idle),
            _ => Err(error),
        };
    }
    if fd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        return Ok(Input::HungUp);
    }
    if fd.revents & libc::POLLIN == 0 {
        return Ok(Input::Idle);
    }
    // Readable with nothing to read: end of file.
    let mut pending: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int we own.
    let rc = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::FIONREAD, &mut pending) };
    Ok(if rc == 0 && pending == 0 {
        Input::HungUp
    } else {
        Input::Ready
    })
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    collector: &Collector,
    theme: Theme,
) -> Result<Ended, TopError> {
    let mut dirty = true;
    let mut size = terminal.size()?;
    while !STOP.load(Ordering::Relaxed) {
        for update in collector.updates() {
            app.on_update(update);
            dirty = true;
        }
        // A resize is noticed here too: crossterm reports it only when it
        // is asked to read.
        let now = terminal.size()?;
        if now != size {
            size = now;
            dirty = true;
        }
        if dirty {
            terminal.draw(|frame| draw(frame, app, theme))?;
            dirty = false;
        }
        match wait_for_input(KEY_POLL)? {
            Input::HungUp => return Ok(Ended::HungUp),
            Input::Idle => continue,
            Input::Ready => {}
        }
        // Everything crossterm has parsed from what arrived.
        while event::poll(Duration::ZERO)? {
            match event::read()? {
                Event::Key(key) if key.kind != KeyEventKind::Release => {
                    dirty = true;
                    match app.on_key(key) {
                        Effect::Quit => return Ok(Ended::Quit),
                        Effect::Send(request) => collector.send(request),
                        Effect::None => {}
                    }
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
    }
    Ok(Ended::Quit)
}
