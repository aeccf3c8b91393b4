//! The collection thread: one census (or one of every namespace) per
//! interval, off the UI thread, so that a slow dump never freezes the keys.
//!
//! The thread owns everything that reads the kernel — the census and, while
//! the trace panel is open, the eBPF tracer — and sends each refresh as one
//! [`Update`]. The UI sends [`Request`]s back: pause, the trace panel, quit.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use twscope_core::doctor::{self, Finding};
use twscope_core::node::{Identity, NamespaceStatus, Node, NodeOptions};
use twscope_core::status::{Status, StatusOptions};
use twscope_core::trace::{Failure, PoolBypass, Sample, TraceFilter, TraceReport};
use twscope_core::NetnsInfo;
use twscope_trace::{Identities, Tracer};

/// Which namespaces a refresh reads.
#[derive(Debug, Clone)]
pub enum Scope {
    /// The calling thread's namespace (entered before the thread starts),
    /// described by `NetnsInfo`.
    One(NetnsInfo),
    /// Every namespace of the node (`--netns all`).
    All,
}

/// One namespace of a refresh, with what the views show of it.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// Who it is, and its census or why there is none: the node's record.
    pub node: NamespaceStatus,
    /// The doctor's worst finding on it.
    pub worst_finding: Option<Finding>,
}

impl Namespace {
    /// The node's record of a namespace, with the doctor's worst finding on
    /// its census.
    pub fn new(node: NamespaceStatus) -> Namespace {
        let worst_finding = node
            .status
            .as_ref()
            .and_then(|s| doctor::diagnose(s).findings.into_iter().next());
        Namespace { node, worst_finding }
    }

    /// How to call it: `host`, a pod, an `ip netns` name, a container.
    pub fn label(&self) -> String {
        self.node.identity.label()
    }

    /// Its inode.
    pub fn inode(&self) -> u64 {
        self.node.identity.inode
    }

    /// Its census; `None` when it has no TCP socket or could not be read.
    pub fn status(&self) -> Option<&Status> {
        self.node.status.as_ref()
    }
}

/// What one refresh read.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The namespaces, most pressed first (one without `--netns all`).
    pub namespaces: Vec<Namespace>,
    /// Whether this is every namespace of the node.
    pub all: bool,
    /// With `--netns all`: namespaces found, idle ones (not listed), and the
    /// missing privilege, if any, in one line.
    pub found: usize,
    /// Namespaces without a TCP socket (not dumped, not listed).
    pub idle: usize,
    /// The privilege a namespace or process was not read for want of.
    pub missing: Option<String>,
    /// The refresh's own cost.
    pub cost: Cost,
}

/// What a refresh cost: the number `top` must keep small.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    /// Wall time of the refresh, in ms.
    pub wall_ms: f64,
    /// CPU time of the process over the refresh (user + system, the
    /// kernel's dump included), in ms.
    pub cpu_ms: f64,
    /// CPU time of the process between the end of the previous refresh and
    /// the start of this one (drawing, keys, reading the tracer), in ms.
    pub between_ms: f64,
    /// Sockets dumped.
    pub sockets: u64,
}

/// The most of one core `top` lets itself take: at 1M sockets one census
/// costs about 0.6 s of CPU (mostly the kernel's dump), so at a 2 s interval
/// the next one waits a little longer ([`Cost::next_after`]).
pub const MAX_CORE_SHARE: f64 = 0.25;

impl Cost {
    /// CPU time of one whole cycle: this refresh and what the process did
    /// since the one before, in ms.
    pub fn cycle_cpu_ms(&self) -> f64 {
        self.cpu_ms + self.between_ms
    }

    /// Seconds from the start of this refresh to the next: `interval_s`, or
    /// longer when a cycle's CPU time would take more than
    /// [`MAX_CORE_SHARE`] of a core at it.
    pub fn next_after(&self, interval_s: f64) -> f64 {
        interval_s.max(self.cycle_cpu_ms() / 1000.0 / MAX_CORE_SHARE)
    }

    /// Whether the refresh is slower than `interval_s` asked for.
    pub fn stretched(&self, interval_s: f64) -> bool {
        self.next_after(interval_s) > interval_s
    }

    /// The share of one core `top` takes at the interval it runs at.
    pub fn core_share(&self, interval_s: f64) -> f64 {
        self.cycle_cpu_ms() / 1000.0 / self.next_after(interval_s).max(self.wall_ms / 1000.0).max(1e-3)
    }
}

/// The trace panel's content.
#[derive(Debug, Clone)]
pub enum TraceState {
    /// The panel is closed: no tracer is attached.
    Off,
    /// The tracer could not attach (usually privileges: the message names
    /// them).
    Unavailable(String),
    /// Attached; the first window ends at the next refresh.
    Starting,
    /// The report of the last interval, and the newest EADDRNOTAVAIL seen
    /// since the panel opened with its age in seconds.
    Window {
        /// Per process × destination over the last interval.
        report: Box<TraceReport>,
        /// The newest EADDRNOTAVAIL failure seen since the panel opened.
        last_addr_not_available: Option<(Failure, f64)>,
    },
}

/// One refresh, sent to the UI.
#[derive(Debug, Clone)]
pub struct Update {
    /// Seconds since `top` started, when the refresh ended.
    pub at_s: f64,
    /// The census, or why it failed this time (one line).
    pub snapshot: Result<Snapshot, String>,
    /// The trace panel.
    pub trace: TraceState,
}

/// What the UI asks of the collection thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop collecting (`p`), or go on.
    Pause(bool),
    /// Open (attach the tracer) or close (detach) the trace panel.
    Trace(bool),
    /// Refresh now.
    Refresh,
    /// End the thread.
    Quit,
}

/// The running collection thread.
pub struct Collector {
    requests: Sender<Request>,
    updates: Receiver<Update>,
    /// Disconnects when the thread ends (its sender is dropped with it).
    ended: Receiver<()>,
}

impl Collector {
    /// Starts the thread. It inherits the calling thread's network namespace
    /// (enter the one to watch first). Fails only when no thread can be made.
    pub fn start(scope: Scope, options: StatusOptions, interval: Duration) -> std::io::Result<Collector> {
        let (requests, requests_rx) = mpsc::channel();
        let (updates_tx, updates) = mpsc::channel();
        let (ended_tx, ended) = mpsc::channel::<()>();
        // Not joined (see `Drop`): the handle is dropped.
        std::thread::Builder::new()
            .name("twscope-collect".into())
            .spawn(move || {
                let _ended = ended_tx;
                Worker::new(scope, options, interval, updates_tx, requests_rx).run();
            })?;
        Ok(Collector {
            requests,
            updates,
            ended,
        })
    }

    /// Sends a request (ignored once the thread has ended).
    pub fn send(&self, request: Request) {
        let _ = self.requests.send(request);
    }

    /// The refreshes that arrived since the last call.
    pub fn updates(&self) -> impl Iterator<Item = Update> + '_ {
        self.updates.try_iter()
    }
}

/// How long quitting waits for a census under way before it goes anyway.
const QUIT_WAIT: Duration = Duration::from_secs(3);

impl Drop for Collector {
    fn drop(&mut self) {
        // Ends the thread after the census under way, waiting for it at most
        // `QUIT_WAIT`: `q` must not wait seconds for a starved dump, and a
        // tracer left behind is detached when the process's descriptors close.
        let _ = self.requests.send(Request::Quit);
        let _ = self.ended.recv_timeout(QUIT_WAIT);
    }
}

/// The tracer and what the last read of it was.
struct Traced {
    tracer: Tracer,
    previous: Sample,
    identities: Identities,
    attached: Instant,
    last_addr_not_available: Option<(Failure, f64)>,
}

struct Worker {
    scope: Scope,
    options: StatusOptions,
    interval: Duration,
    updates: Sender<Update>,
    requests: Receiver<Request>,
    started: Instant,
    paused: bool,
    trace: Option<Result<Traced, String>>,
    /// Process CPU time when the previous refresh ended, in ms.
    refreshed_cpu_ms: Option<f64>,
}

impl Worker {
    fn new(
        scope: Scope,
        options: StatusOptions,
        interval: Duration,
        updates: Sender<Update>,
        requests: Receiver<Request>,
    ) -> Worker {
        Worker {
            scope,
            options,
            interval,
            updates,
            requests,
            started: Instant::now(),
            paused: false,
            trace: None,
            refreshed_cpu_ms: None,
        }
    }

    fn run(mut self) {
        let mut next = Instant::now();
        loop {
            if !self.paused && Instant::now() >= next {
                let began = Instant::now();
                let update = self.refresh();
                let wait = match &update.snapshot {
                    Ok(snapshot) => snapshot.cost.next_after(self.interval.as_secs_f64()),
                    Err(_) => self.interval.as_secs_f64(),
                };
                if self.updates.send(update).is_err() {
                    return;
                }
                next = began + Duration::from_secs_f64(wait);
            }
            let wait = if self.paused {
                Duration::from_secs(3600)
            } else {
                next.saturating_duration_since(Instant::now())
            };
            match self.requests.recv_timeout(wait) {
                Ok(Request::Quit) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Request::Pause(paused)) => {
                    self.paused = paused;
                    self.refreshed_cpu_ms = None;
                    next = Instant::now();
                }
                Ok(Request::Trace(on)) => {
                    self.trace = on.then(attach);
                    next = Instant::now();
                }
                Ok(Request::Refresh) => next = Instant::now(),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn refresh(&mut self) -> Update {
        let wall = Instant::now();
        let cpu = process_cpu_ms();
        // After a pause the time between is not a cycle's: none is counted.
        let between_ms = self.refreshed_cpu_ms.map_or(0.0, |end| cpu - end);
        let snapshot = match &self.scope {
            Scope::One(netns) => Status::collect(&self.options, netns.clone())
                .map(|status| Snapshot {
                    namespaces: vec![Namespace::new(NamespaceStatus {
                        identity: Identity {
                            inode: netns.inode,
                            host: netns.name == "host",
                            // `netns inode N` is what `label` says of a nameless one.
                            name: (!netns.name.starts_with("netns inode")).then(|| netns.name.clone()),
                            ..Identity::default()
                        },
                        status: Some(status),
                        error: None,
                    })],
                    all: false,
                    found: 1,
                    idle: 0,
                    missing: None,
                    cost: Cost::default(),
                })
                .map_err(|e| e.to_string()),
            Scope::All => {
                let node = Node::collect(&NodeOptions {
                    status: self.options.clone(),
                    ..NodeOptions::default()
                });
                Ok(Snapshot {
                    namespaces: node.namespaces.into_iter().map(Namespace::new).collect(),
                    all: true,
                    found: node.found,
                    idle: node.idle,
                    missing: node.missing,
                    cost: Cost::default(),
                })
            }
        };
        let (wall_ms, cpu_ms) = (wall.elapsed().as_secs_f64() * 1e3, process_cpu_ms() - cpu);
        let snapshot = snapshot.map(|mut snapshot| {
            snapshot.cost = Cost {
                wall_ms,
                cpu_ms,
                between_ms,
                sockets: snapshot
                    .namespaces
                    .iter()
                    .filter_map(Namespace::status)
                    .map(|s| s.dump.sockets)
                    .sum(),
            };
            snapshot
        });
        let at_s = self.started.elapsed().as_secs_f64();
        let trace = self.read_trace(at_s);
        self.refreshed_cpu_ms = Some(process_cpu_ms());
        Update { at_s, snapshot, trace }
    }

    /// The tracer's last interval, or why there is none.
    fn read_trace(&mut self, at_s: f64) -> TraceState {
        let traced = match &mut self.trace {
            None => return TraceState::Off,
            Some(Err(message)) => return TraceState::Unavailable(message.clone()),
            Some(Ok(traced)) => traced,
        };
        match traced.read(at_s) {
            Ok(state) => state,
            Err(message) => {
                self.trace = Some(Err(message.clone()));
                TraceState::Unavailable(message)
            }
        }
    }
}

/// Attaches the tracer; the error, in one line, names the capabilities.
fn attach() -> Result<Traced, String> {
    let tracer = Tracer::attach().map_err(|e| e.to_string())?;
    Ok(Traced {
        tracer,
        previous: Sample::default(),
        identities: Identities::default(),
        attached: Instant::now(),
        last_addr_not_available: None,
    })
}

impl Traced {
    fn read(&mut self, at_s: f64) -> Result<TraceState, String> {
        let mut failures = Vec::new();
        self.tracer.drain_failures(&mut failures);
        let flows = self.tracer.flows().map_err(|e| e.to_string())?;
        let now = Sample {
            flows,
            failures,
            losses: self.tracer.losses(),
            started_unix_s: 0.0,
            duration_s: self.attached.elapsed().as_secs_f64(),
        };
        let first = self.previous.duration_s == 0.0;
        let window = now.since(&self.previous);
        self.identities.learn(window.flows.iter().map(|f| f.pid));
        if let Some(newest) = window.failures.iter().rev().find(|f| f.errno == libc::EADDRNOTAVAIL) {
            // Its age: the clock the kernel stamped it with, read now.
            let age_s = monotonic_ns().saturating_sub(newest.timestamp_ns) as f64 / 1e9;
            self.last_addr_not_available = Some((newest.clone(), at_s - age_s));
        }
        // Keep the kernel's map small in a long session: a process that did
        // nothing for a whole interval and has exited is forgotten (its last
        // window was shown already).
        let active: BTreeSet<u32> = window.flows.iter().map(|f| f.pid).collect();
        let exited: BTreeSet<u32> = now
            .flows
            .iter()
            .map(|f| f.pid)
            .filter(|pid| !active.contains(pid) && !Path::new(&format!("/proc/{pid}")).exists())
            .collect();
        let mut now = now;
        if !exited.is_empty() {
            self.tracer.forget(&exited).map_err(|e| e.to_string())?;
            now.flows.retain(|f| !exited.contains(&f.pid));
            self.identities.retain(|pid| !exited.contains(&pid));
        }
        self.previous = now;
        if first && window.flows.is_empty() {
            return Ok(TraceState::Starting);
        }
        let report = TraceReport::build(
            &window,
            self.identities.map(),
            &TraceFilter::default(),
            &PoolBypass::default(),
        );
        Ok(TraceState::Window {
            report: Box::new(report),
            last_addr_not_available: self.last_addr_not_available.clone(),
        })
    }
}

/// CPU time of the whole process, in ms: `--netns all` reads namespaces on
/// a pool of threads, and the UI thread's drawing is part of the cost too.
fn process_cpu_ms() -> f64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID) as f64 / 1e6
}

/// `CLOCK_MONOTONIC`, the clock the tracer stamps failures with.
fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
