//! The UI's state and what each key does to it: no drawing, no I/O, so a
//! test drives it headless exactly as a terminal would ([`App::on_key`],
//! [`App::on_update`]) and snapshots what [`crate::view::draw`] makes of it.

use std::cmp::Ordering;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use twscope_core::history::{History, Trend, DEFAULT_MAX_SERIES};
use twscope_core::status::{Destination, Status};

use crate::collect::{Namespace, Request, Snapshot, TraceState, Update};

/// How far back the ESTABLISHED range and the close-rate sparkline reach.
pub const HISTORY_SPAN_S: f64 = 300.0;

/// How the destination table is ordered (`s` cycles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Most at risk first: severity, then the most urgent outlook, then
    /// utilization.
    #[default]
    Risk,
    /// Most TIME_WAIT first.
    TimeWait,
    /// Most ports in use first.
    InUse,
    /// Highest close rate first.
    CloseRate,
    /// By address and port.
    Destination,
}

impl SortKey {
    /// The next order, for `s`.
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Risk => SortKey::TimeWait,
            SortKey::TimeWait => SortKey::InUse,
            SortKey::InUse => SortKey::CloseRate,
            SortKey::CloseRate => SortKey::Destination,
            SortKey::Destination => SortKey::Risk,
        }
    }

    /// Its name in the header.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Risk => "risk",
            SortKey::TimeWait => "TIME_WAIT",
            SortKey::InUse => "in use",
            SortKey::CloseRate => "close rate",
            SortKey::Destination => "destination",
        }
    }

    /// `a` before `b`?
    pub fn compare(self, a: &Destination, b: &Destination) -> Ordering {
        let by_name = || (&a.addr, a.port).cmp(&(&b.addr, b.port));
        let desc = |x: f64, y: f64| y.partial_cmp(&x).unwrap_or(Ordering::Equal);
        match self {
            SortKey::Risk => b
                .severity
                .cmp(&a.severity)
                .then_with(|| {
                    if a.outlook.more_urgent_than(&b.outlook) {
                        Ordering::Less
                    } else if b.outlook.more_urgent_than(&a.outlook) {
                        Ordering::Greater
                    } else {
                        Ordering::Equal
                    }
                })
                .then_with(|| desc(a.utilization, b.utilization))
                .then_with(|| b.in_use.cmp(&a.in_use))
                .then_with(by_name),
            SortKey::TimeWait => b.time_wait.cmp(&a.time_wait).then_with(by_name),
            SortKey::InUse => b.in_use.cmp(&a.in_use).then_with(by_name),
            SortKey::CloseRate => desc(a.close_rate_per_s, b.close_rate_per_s).then_with(by_name),
            SortKey::Destination => by_name(),
        }
    }
}

/// Which screen is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// One namespace's destinations.
    Destinations,
    /// Every namespace of the node (`--netns all`), to drill into.
    Namespaces,
}

/// The whole UI state.
#[derive(Debug)]
pub struct App {
    /// The refresh interval, in seconds (for the header and the cost).
    pub interval_s: f64,
    /// When the newest refresh ended, in seconds since `top` started.
    pub at_s: f64,
    /// Why the newest refresh failed, when it did (the last good census is
    /// still shown).
    pub error: Option<String>,
    /// The trace panel, as of the newest refresh.
    pub trace: TraceState,
    /// The newest census that succeeded, shown when a refresh failed.
    pub snapshot: Option<Snapshot>,
    /// Each destination's last minutes.
    pub history: History,
    /// The table's order.
    pub sort: SortKey,
    /// The filter (`/`): destinations or namespaces containing this text.
    pub filter: String,
    /// Whether keys are typing into the filter.
    pub editing_filter: bool,
    /// Whether refreshes are paused (`p`).
    pub paused: bool,
    /// The screen shown.
    pub screen: Screen,
    /// The namespace the destinations screen shows, by inode (`None`: the
    /// only one, without `--netns all`).
    pub namespace: Option<u64>,
    /// The selected row of the namespace list.
    pub cursor: usize,
    /// The first destination row shown (scrolling).
    pub scroll: usize,
    /// Whether the help screen is open (`?`).
    pub help: bool,
    /// Whether the trace panel is open (`t`).
    pub trace_panel: bool,
    /// A one-line message for the footer (a key that does nothing here).
    pub message: Option<String>,
}

/// What a key asks of the program beyond the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing more.
    None,
    /// Quit.
    Quit,
    /// Tell the collection thread.
    Send(Request),
}

impl App {
    /// The state before the first refresh; `all` for `--netns all`.
    pub fn new(interval_s: f64, all: bool) -> App {
        App {
            interval_s,
            at_s: 0.0,
            error: None,
            trace: TraceState::Off,
            snapshot: None,
            history: History::new(HISTORY_SPAN_S, DEFAULT_MAX_SERIES),
            sort: SortKey::default(),
            filter: String::new(),
            editing_filter: false,
            paused: false,
            screen: if all { Screen::Namespaces } else { Screen::Destinations },
            namespace: None,
            cursor: 0,
            scroll: 0,
            help: false,
            trace_panel: false,
            message: None,
        }
    }

    /// Takes a refresh: its censuses go into the history, and it is shown.
    pub fn on_update(&mut self, update: Update) {
        let Update { at_s, snapshot, trace } = update;
        match snapshot {
            Ok(snapshot) => {
                for ns in &snapshot.namespaces {
                    if let Some(status) = ns.status() {
                        self.history.record(status, at_s);
                    }
                }
                if snapshot.all {
                    let live: Vec<u64> = snapshot.namespaces.iter().map(Namespace::inode).collect();
                    self.history.retain_namespaces(|inode| live.contains(&inode));
                }
                self.snapshot = Some(snapshot);
                self.error = None;
            }
            Err(error) => self.error = Some(error),
        }
        self.at_s = at_s;
        self.trace = trace;
        let rows = self.namespaces().len();
        self.cursor = self.cursor.min(rows.saturating_sub(1));
    }

    /// What a key does.
    pub fn on_key(&mut self, key: KeyEvent) -> Effect {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Effect::Quit;
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) if !c.is_control() && self.filter.chars().count() < 64 => self.filter.push(c),
                _ => {}
            }
            self.scroll = 0;
            self.cursor = 0;
            return Effect::None;
        }
        if self.help {
            self.help = false;
            return Effect::None;
        }
        self.message = None;
        match key.code {
            KeyCode::Char('q') => return Effect::Quit,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = true,
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.scroll = 0;
            }
            KeyCode::Char('/') => {
                self.editing_filter = true;
                self.filter.clear();
            }
            KeyCode::Char('p') | KeyCode::Char(' ') => {
                self.paused = !self.paused;
                return Effect::Send(Request::Pause(self.paused));
            }
            KeyCode::Char('t') => {
                self.trace_panel = !self.trace_panel;
                return Effect::Send(Request::Trace(self.trace_panel));
            }
            KeyCode::Char('r') => return Effect::Send(Request::Refresh),
            KeyCode::Char('n') => self.next_namespace(),
            KeyCode::Enter | KeyCode::Right => self.drill_in(),
            KeyCode::Esc | KeyCode::Backspace | KeyCode::Left => self.back(),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::PageDown => self.move_by(10),
            KeyCode::PageUp => self.move_by(-10),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(isize::MIN / 2),
            _ => {}
        }
        Effect::None
    }

    fn all(&self) -> bool {
        self.snapshot.as_ref().is_some_and(|s| s.all)
    }

    fn next_namespace(&mut self) {
        if !self.all() {
            self.message = Some("one namespace is watched; start with --netns all to switch".into());
            return;
        }
        let inodes: Vec<u64> = self.namespaces().iter().map(|n| n.inode()).collect();
        if inodes.is_empty() {
            return;
        }
        let next = match self.namespace.and_then(|i| inodes.iter().position(|&n| n == i)) {
            Some(at) => (at + 1) % inodes.len(),
            None => self.cursor.min(inodes.len() - 1),
        };
        self.cursor = next;
        self.namespace = Some(inodes[next]);
        self.screen = Screen::Destinations;
        self.scroll = 0;
    }

    fn drill_in(&mut self) {
        if self.screen != Screen::Namespaces {
            return;
        }
        if let Some(ns) = self.namespaces().get(self.cursor) {
            self.namespace = Some(ns.inode());
            self.screen = Screen::Destinations;
            self.scroll = 0;
            self.filter.clear();
        }
    }

    fn back(&mut self) {
        if !self.filter.is_empty() {
            self.filter.clear();
        } else if self.all() && self.screen == Screen::Destinations {
            self.screen = Screen::Namespaces;
        }
    }

    fn move_by(&mut self, delta: isize) {
        match self.screen {
            Screen::Namespaces => {
                let last = self.namespaces().len().saturating_sub(1);
                self.cursor = self.cursor.saturating_add_signed(delta).min(last);
            }
            Screen::Destinations => {
                let last = self.destinations().len().saturating_sub(1);
                self.scroll = self.scroll.saturating_add_signed(delta).min(last);
            }
        }
    }

    /// The namespaces of the list, filtered, in the node's order (most
    /// pressed first).
    pub fn namespaces(&self) -> Vec<&Namespace> {
        let Some(snapshot) = &self.snapshot else {
            return Vec::new();
        };
        let filter = self.filter.to_lowercase();
        snapshot
            .namespaces
            .iter()
            .filter(|n| {
                self.screen != Screen::Namespaces || filter.is_empty() || n.label().to_lowercase().contains(&filter)
            })
            .collect()
    }

    /// The namespace the destinations screen shows.
    pub fn shown_namespace(&self) -> Option<&Namespace> {
        let snapshot = self.snapshot.as_ref()?;
        match self.namespace {
            Some(inode) => snapshot.namespaces.iter().find(|n| n.inode() == inode),
            None => snapshot.namespaces.first(),
        }
    }

    /// The shown namespace's census.
    pub fn status(&self) -> Option<&Status> {
        self.shown_namespace()?.status()
    }

    /// The shown namespace's destinations, filtered and in the chosen
    /// order, each with its trend.
    pub fn destinations(&self) -> Vec<(&Destination, Option<Trend>)> {
        let Some(status) = self.status() else {
            return Vec::new();
        };
        let mut shown: Vec<&Destination> = status
            .destinations
            .iter()
            .filter(|d| self.filter.is_empty() || d.endpoint().contains(self.filter.as_str()))
            .collect();
        shown.sort_by(|a, b| self.sort.compare(a, b));
        shown
            .into_iter()
            .map(|d| (d, self.history.trend(status.netns.inode, d)))
            .collect()
    }

    /// The newest refresh's error, when it failed (the last good census is
    /// still shown).
    pub fn refresh_error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}
