//! `serve --trace`: who opens connections, who leaves TIME_WAITs and whose
//! connects fail, as Prometheus counters with bounded cardinality.
//!
//! The tracer (the `twscope-trace` crate: eBPF on tracepoints) counts per
//! (process, network namespace, destination) since it attached. This module
//! turns those per-PID running totals into counters per (comm, container,
//! netns, destination) that
//!
//! - **count every connect once**: each read adds the difference to the last
//!   read of the same kernel entry, and each export adds what is new to
//!   exactly one series — its own, or `comm="other"` — so `sum(rate())` and
//!   `sum(increase())` over every series are every connect, failure and
//!   TIME_WAIT the kernel counted, and nothing is counted twice;
//! - **stay monotonic**: no series ever goes down. A series that leaves the
//!   top (or whose processes all exited [`LINGER`] ago) stops being exported
//!   and keeps its value in userspace ([`RETIRED`] of them); when it comes
//!   back it goes on from that value. Its counts are *not* moved into
//!   `other`: `other` would jump without a connect, and `increase()` would
//!   count them a second time (an EADDRNOTAVAIL alert would fire again for
//!   `other` when a failing process's series retires);
//! - **lose no first increment**: `increase()` counts nothing in a series'
//!   first sample, so a series (or `other`) Prometheus has not seen before
//!   is first exported with its value of before (0 when new), and what it
//!   counted meanwhile in the next export — a process that fails at once
//!   still makes `increase(…{errno="EADDRNOTAVAIL"}[5m]) > 0` true;
//! - **stay bounded**: at most `max_series` series of their own, the rest
//!   summed into one `comm="other"` series;
//! - **keep the kernel's map small**: the flows of a process that exited are
//!   removed from the kernel's map ([`FlowSource::forget`]) once its last
//!   closes had time to land ([`FORGET_AFTER`]); their counts stay here.
//!
//! A thread of its own ([`Tracing`]) reads the tracer every [`POLL`] — to
//! learn who new processes are while they run and to forget exited ones
//! whatever the scrape interval — and each snapshot reads it once more
//! ([`TraceReader::view`]), so a scrape sees every connect up to its dump
//! (in a series new to it, from the next scrape on).
//! The exporter knows the tracer only through [`FlowSource`]: it needs no
//! eBPF of its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use twscope_core::node::identity;
use twscope_core::trace::{Flow, Losses, ProcessIdentity, FAILURE_CLASSES};

/// How often the tracer is read between scrapes.
pub const POLL: Duration = Duration::from_secs(1);

/// How long the flows of an exited process stay in the kernel's map: the
/// close that leaves a TIME_WAIT is counted when the peer's FIN arrives,
/// which may be after the process exited.
pub const FORGET_AFTER: Duration = Duration::from_secs(5);

/// How long a series keeps being exported after the last of its processes
/// exited: long enough for a few scrapes (and an alert's window) to see its
/// last counts. Then it is kept only as a value ([`RETIRED`]).
pub const LINGER: Duration = Duration::from_secs(300);

/// Values of series no longer exported that are remembered, so that one
/// that comes back goes on from its value; the oldest are dropped first (one
/// that comes back after that starts again from zero: a counter reset, which
/// `rate()` handles).
pub const RETIRED: usize = 4096;

/// Entries the kernel's flow map holds (`bpf/tcptrace.h`).
pub const KERNEL_FLOWS: usize = 16_384;

/// Past this many tracked flows, exited processes are forgotten at once.
const PRESSURE: usize = KERNEL_FLOWS * 3 / 4;

/// The default of `--max-trace-series`.
pub const DEFAULT_MAX_SERIES: usize = 50;

/// The label value of the series summed from the rest.
pub const OTHER: &str = "other";

/// Index of EADDRNOTAVAIL in [`FAILURE_CLASSES`].
const ADDR_NOT_AVAILABLE: usize = 0;

/// What `serve --trace` reads: the attached tracer, behind a trait so that
/// the exporter needs no eBPF (the binary implements it for
/// `twscope_trace::Tracer`) and tests can feed it.
pub trait FlowSource: Send {
    /// Every flow counted since attach (cumulative per key).
    fn flows(&mut self) -> Result<Vec<Flow>, String>;
    /// Removes the flows of `pids` (exited processes) from the kernel's map;
    /// returns how many went.
    fn forget(&mut self, pids: &BTreeSet<u32>) -> Result<usize, String>;
    /// Discards the failure events waiting (the counts are in the flows), so
    /// the ring buffer never overflows for want of a reader.
    fn drain_events(&mut self);
    /// What the kernel half could not record, since attach.
    fn losses(&self) -> Losses;
}

/// What the accumulator asks about processes: `/proc` ([`ProcFs`]) in the
/// exporter, a table in tests.
pub trait Processes: Send {
    /// The process's start time (clock ticks since boot), `None` once it
    /// exited (or is a zombie): a PID whose start time changed is another
    /// process.
    fn start_ticks(&mut self, pid: u32) -> Option<u64>;
    /// Its container or pod label ([`ProcessIdentity::label`]), `None` for
    /// a host process or one already gone.
    fn container(&mut self, pid: u32) -> Option<String>;
}

/// [`Processes`] from `/proc`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcFs;

impl Processes for ProcFs {
    fn start_ticks(&mut self, pid: u32) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        start_ticks(&stat)
    }

    /// The cgroup (container, pod UID) and, in a pod, its UTS hostname (the
    /// pod name) — not the runtime, which `twscope trace` reads from the
    /// executable: too costly for every new process of a busy node.
    fn container(&mut self, pid: u32) -> Option<String> {
        let dir = Path::new("/proc").join(pid.to_string());
        let facts = twscope_core::files::read_regular(&dir.join("cgroup"), 64 * 1024)
            .map(|text| identity::parse_proc_cgroup(&text))
            .ok()?;
        let pod_name = facts.pod.as_ref().and_then(|_| twscope_core::node::uts_hostname(pid));
        ProcessIdentity {
            container: facts.container,
            pod_uid: facts.pod.map(|(uid, _)| uid),
            pod_name,
            runtime: None,
        }
        .label()
    }
}

/// Field 22 of a `/proc/PID/stat` line (start time), `None` for a zombie or
/// a dead task.
fn start_ticks(stat: &str) -> Option<u64> {
    // The command may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // State is field 3; the start time is field 22.
    fields.nth(18)?.parse().ok()
}

/// The counts a series exports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connects that reached port selection, failed ones included.
    pub connects: u64,
    /// Closes that left a TIME_WAIT socket.
    pub time_wait_left: u64,
    /// Failed connects per class of [`FAILURE_CLASSES`].
    pub failures: [u64; FAILURE_CLASSES.len()],
}

impl Counts {
    /// A flow's counts.
    pub fn of(flow: &Flow) -> Counts {
        Counts {
            connects: flow.connects,
            time_wait_left: flow.time_wait_left,
            failures: flow.failures,
        }
    }

    fn add(&mut self, other: &Counts) {
        self.connects += other.connects;
        self.time_wait_left += other.time_wait_left;
        for (a, b) in self.failures.iter_mut().zip(other.failures) {
            *a += b;
        }
    }

    /// What was added since `earlier`; all of it when any count went down
    /// (the kernel's entry was made anew).
    fn since(&self, earlier: &Counts) -> Counts {
        let fields = |c: &Counts| {
            let mut all = vec![c.connects, c.time_wait_left];
            all.extend(c.failures);
            all
        };
        let (now, then) = (fields(self), fields(earlier));
        if now.iter().zip(&then).any(|(n, t)| n < t) {
            return *self;
        }
        let mut d = Counts {
            connects: self.connects - earlier.connects,
            time_wait_left: self.time_wait_left - earlier.time_wait_left,
            failures: self.failures,
        };
        for (a, b) in d.failures.iter_mut().zip(earlier.failures) {
            *a -= b;
        }
        d
    }

    /// All failed connects.
    pub fn failed(&self) -> u64 {
        self.failures.iter().sum()
    }

    /// Connects that failed with EADDRNOTAVAIL.
    pub fn addr_not_available(&self) -> u64 {
        self.failures[ADDR_NOT_AVAILABLE]
    }
}

/// One exported series' labels and counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRow {
    /// The process's name (`other` for the sum of the rest).
    pub comm: String,
    /// Its container or pod label, empty for a host process (and `other`).
    pub container: String,
    /// Its network namespace's inode, as `--netns all` labels it (`other`).
    pub netns: String,
    /// Destination address, IPv6 without brackets (`other`).
    pub dst: String,
    /// Destination port (empty for `other`).
    pub dst_port: String,
    /// Its counters.
    pub counts: Counts,
}

/// What one snapshot exports of the tracer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceView {
    /// The programs are attached and the last read of their map succeeded.
    pub attached: bool,
    /// The series with their own labels, then `comm="other"` (once anything
    /// was summed into it).
    pub rows: Vec<TraceRow>,
    /// (process, destination) series known, before the cut.
    pub series: usize,
    /// Entries of the kernel's flow map being followed.
    pub flows: usize,
    /// Flows of exited processes removed from the kernel's map, since start.
    pub forgotten: u64,
    /// Reads of the kernel's map that failed, since start.
    pub read_errors: u64,
    /// What the kernel half could not record, since attach.
    pub losses: Losses,
}

/// A series: who (comm, container, netns) to where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct SeriesKey {
    comm: String,
    container: String,
    netns: u64,
    addr: IpAddr,
    port: u16,
}

/// A kernel entry: (pid, netns, address, port).
type FlowKey = (u32, u64, IpAddr, u16);

#[derive(Debug)]
struct Seen {
    counts: Counts,
    series: SeriesKey,
}

#[derive(Debug)]
struct Pid {
    start: Option<u64>,
    container: Option<String>,
    exited: Option<Instant>,
}

#[derive(Debug, Default)]
struct Series {
    /// Everything counted for it (since it was last created): its rank.
    total: Counts,
    /// What of `total` was exported (in its own series or in `other`).
    accounted: Counts,
    /// Its own series' value (kept while it is not exported).
    value: Counts,
    /// Whether it is exported with its own labels now.
    shown: bool,
    /// Kernel entries counted into it now.
    flows: usize,
    /// Since when no kernel entry counts into it.
    idle_since: Option<Instant>,
}

/// The userspace totals behind the counters (see the module's doc).
#[derive(Debug)]
pub struct Accumulator {
    max_series: usize,
    pids: HashMap<u32, Pid>,
    flows: HashMap<FlowKey, Seen>,
    series: BTreeMap<SeriesKey, Series>,
    other: Counts,
    /// Whether `comm="other"` is exported (from the first count folded).
    other_shown: bool,
    /// Values of series no longer kept, oldest first in `retired_order`.
    retired: HashMap<SeriesKey, Counts>,
    retired_order: std::collections::VecDeque<SeriesKey>,
}

impl Accumulator {
    /// Empty, with at most `max_series` series of their own.
    pub fn new(max_series: usize) -> Accumulator {
        Accumulator {
            max_series,
            pids: HashMap::new(),
            flows: HashMap::new(),
            series: BTreeMap::new(),
            other: Counts::default(),
            other_shown: false,
            retired: HashMap::new(),
            retired_order: std::collections::VecDeque::new(),
        }
    }

    /// Notes which known processes exited (or whose PID is now another's).
    pub fn check_exits(&mut self, processes: &mut dyn Processes, now: Instant) {
        for (pid, p) in self.pids.iter_mut().filter(|(_, p)| p.exited.is_none()) {
            if processes.start_ticks(*pid) != p.start {
                p.exited = Some(now);
            }
        }
    }

    /// Adds what `flows` (a read of the kernel's map) counted since the last
    /// read of each entry.
    pub fn absorb(&mut self, flows: &[Flow], processes: &mut dyn Processes, now: Instant) {
        for flow in flows {
            let addr = flow.addr.to_canonical();
            let pid = self.pids.entry(flow.pid).or_insert_with(|| {
                let start = processes.start_ticks(flow.pid);
                Pid {
                    start,
                    container: start.and_then(|_| processes.container(flow.pid)),
                    exited: start.is_none().then_some(now),
                }
            });
            let key = (flow.pid, flow.netns, addr, flow.port);
            let seen = self.flows.entry(key).or_insert_with(|| {
                let series = SeriesKey {
                    comm: flow.comm.clone(),
                    container: pid.container.clone().unwrap_or_default(),
                    netns: flow.netns,
                    addr,
                    port: flow.port,
                };
                let retired = &mut self.retired;
                let s = self.series.entry(series.clone()).or_insert_with(|| Series {
                    value: retired.remove(&series).unwrap_or_default(),
                    ..Series::default()
                });
                s.flows += 1;
                s.idle_since = None;
                Seen {
                    counts: Counts::default(),
                    series,
                }
            });
            let counts = Counts::of(flow);
            let delta = counts.since(&seen.counts);
            seen.counts = counts;
            if let Some(s) = self.series.get_mut(&seen.series) {
                s.total.add(&delta);
            }
        }
    }

    /// The exited processes whose flows may leave the kernel's map now: those
    /// gone for [`FORGET_AFTER`], or every one when the map fills up.
    pub fn doomed(&self, now: Instant) -> BTreeSet<u32> {
        let pressed = self.flows.len() >= PRESSURE;
        self.pids
            .iter()
            .filter(|(_, p)| {
                p.exited
                    .is_some_and(|t| pressed || now.duration_since(t) >= FORGET_AFTER)
            })
            .map(|(pid, _)| *pid)
            .collect()
    }

    /// Drops what was kept of `pids` once their kernel entries are gone;
    /// their counts stay in their series.
    pub fn forgot(&mut self, pids: &BTreeSet<u32>, now: Instant) {
        let series = &mut self.series;
        self.flows.retain(|key, seen| {
            if !pids.contains(&key.0) {
                return true;
            }
            if let Some(s) = series.get_mut(&seen.series) {
                s.flows -= 1;
                if s.flows == 0 {
                    s.idle_since = Some(now);
                }
            }
            false
        });
        self.pids.retain(|pid, _| !pids.contains(pid));
    }

    /// Kernel entries followed now.
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// The series to export now: the top `max_series` with their own labels,
    /// the rest summed into `comm="other"`; what is new since the last export
    /// is added to exactly one of them, and none goes down. Also returns how
    /// many series are known (before the cut).
    pub fn export(&mut self, now: Instant) -> (Vec<TraceRow>, usize) {
        // Series of processes that all exited LINGER ago leave the top.
        for s in self.series.values_mut() {
            if lingered(s, now) {
                s.shown = false;
            }
        }
        let known = self.series.len();
        let entered = self.choose_top(now);
        // A series Prometheus has not seen first shows its value of before
        // (0 when new), and what it counted in the next export: increase()
        // sees no increment in a series' first sample.
        let mut other_entered = false;
        for (key, s) in self.series.iter_mut() {
            let delta = s.total.since(&s.accounted);
            if delta == Counts::default() || entered.contains(key) {
                continue;
            }
            if s.shown {
                s.value.add(&delta);
            } else if self.other_shown {
                self.other.add(&delta);
            } else {
                other_entered = true;
                continue;
            }
            s.accounted = s.total;
        }
        self.other_shown |= other_entered;
        // Series without flows, not exported and with nothing left to add
        // are kept only as a value.
        let idle: Vec<SeriesKey> = self
            .series
            .iter()
            .filter(|(_, s)| s.flows == 0 && !s.shown && s.total == s.accounted)
            .map(|(k, _)| k.clone())
            .collect();
        for key in idle {
            if let Some(s) = self.series.remove(&key) {
                if s.value != Counts::default() {
                    self.retire(key, s.value);
                }
            }
        }
        let mut rows: Vec<TraceRow> = self
            .series
            .iter()
            .filter(|(_, s)| s.shown)
            .map(|(k, s)| TraceRow {
                comm: k.comm.clone(),
                container: k.container.clone(),
                netns: k.netns.to_string(),
                dst: k.addr.to_string(),
                dst_port: k.port.to_string(),
                counts: s.value,
            })
            .collect();
        if self.other_shown {
            rows.push(TraceRow {
                comm: OTHER.into(),
                container: String::new(),
                netns: OTHER.into(),
                dst: OTHER.into(),
                dst_port: String::new(),
                counts: self.other,
            });
        }
        (rows, known)
    }

    /// Remembers a series' value, the oldest forgotten past [`RETIRED`].
    fn retire(&mut self, key: SeriesKey, value: Counts) {
        if self.retired.insert(key.clone(), value).is_none() {
            self.retired_order.push_back(key);
        }
        while self.retired.len() > RETIRED {
            let Some(oldest) = self.retired_order.pop_front() else {
                break;
            };
            self.retired.remove(&oldest);
        }
        // Keys taken back by a new series leave stale entries in the order.
        if self.retired_order.len() > 2 * RETIRED {
            let retired = &self.retired;
            self.retired_order.retain(|k| retired.contains_key(k));
        }
    }

    /// Gives the top series their own: free places first, then a series
    /// takes the place of the smallest one shown (by [`rank`]) when it has an
    /// EADDRNOTAVAIL and that one has none, or a live process and that one
    /// has none, or else a quarter more connects and failures (so two close
    /// series do not swap back and forth). The one displaced keeps its value
    /// and stops being exported.
    fn choose_top(&mut self, now: Instant) -> BTreeSet<SeriesKey> {
        let mut entered = BTreeSet::new();
        let mut candidates: Vec<(&SeriesKey, (bool, bool, u64))> = self
            .series
            .iter()
            .filter(|(_, s)| !s.shown && !lingered(s, now))
            .map(|(k, s)| (k, rank(s)))
            .collect();
        candidates.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let candidates: Vec<SeriesKey> = candidates.into_iter().map(|(k, _)| k.clone()).collect();
        let mut shown = self.series.values().filter(|s| s.shown).count();
        for key in candidates {
            if shown < self.max_series {
                if let Some(s) = self.series.get_mut(&key) {
                    s.shown = true;
                }
                entered.insert(key);
                shown += 1;
                continue;
            }
            let Some((weakest, weakest_rank)) = self
                .series
                .iter()
                .filter(|(_, s)| s.shown)
                .map(|(k, s)| (k, rank(s)))
                .min_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
                .map(|(k, r)| (k.clone(), r))
            else {
                break;
            };
            let challenger = rank(&self.series[&key]);
            let wins = if (challenger.0, challenger.1) != (weakest_rank.0, weakest_rank.1) {
                (challenger.0, challenger.1) > (weakest_rank.0, weakest_rank.1)
            } else {
                challenger.2 > weakest_rank.2.saturating_add(weakest_rank.2 / 4)
            };
            if !wins {
                break;
            }
            for (k, shown) in [(&weakest, false), (&key, true)] {
                if let Some(s) = self.series.get_mut(k) {
                    s.shown = shown;
                }
            }
            entered.remove(&weakest);
            entered.insert(key);
        }
        entered
    }
}

/// What the top is ranked by: a series with an EADDRNOTAVAIL before any
/// without (the alert names its process), then one with a process alive
/// before one whose processes all exited, then connects plus failures.
fn rank(s: &Series) -> (bool, bool, u64) {
    (
        s.total.addr_not_available() > 0,
        s.flows > 0,
        s.total.connects.saturating_add(s.total.failed()),
    )
}

/// Whether a series' processes all exited [`LINGER`] ago: it leaves the top
/// and is kept only as a value.
fn lingered(s: &Series, now: Instant) -> bool {
    s.flows == 0 && s.idle_since.is_some_and(|t| now.duration_since(t) >= LINGER)
}

/// `serve --trace`'s settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceOptions {
    /// (process, destination) series with their own counters; the rest are
    /// summed into `comm="other"`.
    pub max_series: usize,
}

impl Default for TraceOptions {
    fn default() -> TraceOptions {
        TraceOptions {
            max_series: DEFAULT_MAX_SERIES,
        }
    }
}

struct State {
    /// `None` once stopped: the tracer is detached.
    source: Option<Box<dyn FlowSource>>,
    processes: Box<dyn Processes>,
    accumulator: Accumulator,
    last_read_ok: bool,
    read_errors: u64,
    forgotten: u64,
}

impl State {
    /// One read: exits, counts, events, forgetting.
    fn refresh(&mut self, now: Instant) {
        let Some(source) = self.source.as_mut() else {
            return;
        };
        self.accumulator.check_exits(self.processes.as_mut(), now);
        match source.flows() {
            Ok(flows) => {
                self.accumulator.absorb(&flows, self.processes.as_mut(), now);
                if !self.last_read_ok {
                    self.last_read_ok = true;
                }
            }
            Err(e) => {
                if self.last_read_ok {
                    // Not eprintln!: a closed stderr must not panic the server.
                    let _ = writeln!(std::io::stderr(), "twscope serve: reading the tracer failed: {e}");
                }
                self.last_read_ok = false;
                self.read_errors += 1;
                return;
            }
        }
        source.drain_events();
        let doomed = self.accumulator.doomed(now);
        if doomed.is_empty() {
            return;
        }
        match source.forget(&doomed) {
            Ok(n) => {
                self.forgotten += n as u64;
                self.accumulator.forgot(&doomed, now);
            }
            Err(_) => self.read_errors += 1,
        }
    }

    fn view(&mut self, now: Instant) -> TraceView {
        self.refresh(now);
        let (rows, series) = self.accumulator.export(now);
        TraceView {
            attached: self.source.is_some() && self.last_read_ok,
            rows,
            series,
            flows: self.accumulator.flows(),
            forgotten: self.forgotten,
            read_errors: self.read_errors,
            losses: self.source.as_ref().map(|s| s.losses()).unwrap_or_default(),
        }
    }
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The attached tracer, read by a thread of its own every [`POLL`] and by
/// every snapshot; stopping it (or dropping it) detaches the tracer.
pub struct Tracing {
    shared: Arc<Shared>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing").finish_non_exhaustive()
    }
}

impl Tracing {
    /// Starts reading `source` (an attached tracer), learning who processes
    /// are from `/proc`.
    pub fn start(source: Box<dyn FlowSource>, options: TraceOptions) -> std::io::Result<Tracing> {
        Tracing::with_processes(source, Box::new(ProcFs), options)
    }

    /// [`Tracing::start`] with another source of process facts.
    pub fn with_processes(
        source: Box<dyn FlowSource>,
        processes: Box<dyn Processes>,
        options: TraceOptions,
    ) -> std::io::Result<Tracing> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                source: Some(source),
                processes,
                accumulator: Accumulator::new(options.max_series),
                last_read_ok: true,
                read_errors: 0,
                forgotten: 0,
            }),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let reader = shared.clone();
        let thread = std::thread::Builder::new()
            .name("twscope-trace".into())
            .spawn(move || {
                // Ends when the sender is dropped (stop) or sends.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(POLL) {
                    reader.lock().refresh(Instant::now());
                }
            })?;
        Ok(Tracing {
            shared,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// What snapshots read.
    pub fn reader(&self) -> TraceReader {
        TraceReader(self.shared.clone())
    }

    /// Stops the reading thread and detaches the tracer (drops the source);
    /// readers then see `attached` 0 and the last counts.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let source = self.shared.lock().source.take();
        drop(source);
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A snapshot's handle on the tracer.
#[derive(Clone)]
pub struct TraceReader(Arc<Shared>);

impl std::fmt::Debug for TraceReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceReader").finish_non_exhaustive()
    }
}

impl TraceReader {
    /// Reads the tracer once more and exports its series.
    pub fn view(&self) -> TraceView {
        self.0.lock().view(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twscope_core::trace::EADDRNOTAVAIL;

    /// Processes by PID: start time, container label; absent = exited.
    #[derive(Default)]
    struct Table(BTreeMap<u32, (u64, Option<String>)>);

    impl Processes for Table {
        fn start_ticks(&mut self, pid: u32) -> Option<u64> {
            self.0.get(&pid).map(|p| p.0)
        }
        fn container(&mut self, pid: u32) -> Option<String> {
            self.0.get(&pid).and_then(|p| p.1.clone())
        }
    }

    /// A kernel map: flows by key, forgetting as the tracer does.
    #[derive(Default)]
    struct Kernel(BTreeMap<FlowKey, Flow>);

    impl Kernel {
        fn connect(&mut self, pid: u32, comm: &str, dst: &str, n: u64, eaddrnotavail: u64) {
            let addr: IpAddr = dst.parse().unwrap();
            let f = self.0.entry((pid, 4026531840, addr, 5432)).or_insert_with(|| Flow {
                pid,
                netns: 4026531840,
                addr,
                port: 5432,
                comm: comm.into(),
                cgroup_id: 0,
                connects: 0,
                established: 0,
                time_wait_left: 0,
                resets: 0,
                closes: 0,
                concurrent: 0,
                max_concurrent: 0,
                failures: [0; 8],
                lifetime_log2_us: [0; 32],
            });
            f.connects += n + eaddrnotavail;
            f.time_wait_left += n;
            f.failures[ADDR_NOT_AVAILABLE] += eaddrnotavail;
        }
        fn flows(&self) -> Vec<Flow> {
            self.0.values().cloned().collect()
        }
        fn forget(&mut self, pids: &BTreeSet<u32>) -> usize {
            let before = self.0.len();
            self.0.retain(|k, _| !pids.contains(&k.0));
            before - self.0.len()
        }
    }

    /// One read and export, as a snapshot does.
    fn scrape(acc: &mut Accumulator, kernel: &mut Kernel, procs: &mut Table, now: Instant) -> Vec<TraceRow> {
        acc.check_exits(procs, now);
        acc.absorb(&kernel.flows(), procs, now);
        let doomed = acc.doomed(now);
        kernel.forget(&doomed);
        acc.forgot(&doomed, now);
        acc.export(now).0
    }

    fn by_comm(rows: &[TraceRow]) -> BTreeMap<String, Counts> {
        rows.iter().map(|r| (r.comm.clone(), r.counts)).collect()
    }

    /// What Prometheus makes of the exports: every series' increase, summed;
    /// it fails when a series (present or back) is below its last value.
    #[derive(Default)]
    struct Prometheus {
        last: BTreeMap<(String, String, String, String, String), Counts>,
        connects: u64,
        failed: u64,
        time_wait_left: u64,
    }

    impl Prometheus {
        fn scrape(&mut self, rows: &[TraceRow]) {
            for r in rows {
                let key = (
                    r.comm.clone(),
                    r.container.clone(),
                    r.netns.clone(),
                    r.dst.clone(),
                    r.dst_port.clone(),
                );
                let before = self.last.get(&key).copied().unwrap_or_default();
                assert_eq!(r.counts.since(&before).connects + before.connects, r.counts.connects);
                assert!(
                    r.counts.connects >= before.connects
                        && r.counts.time_wait_left >= before.time_wait_left
                        && r.counts.failures.iter().zip(before.failures).all(|(a, b)| *a >= b),
                    "{key:?} went down from {before:?} to {:?}",
                    r.counts
                );
                self.connects += r.counts.connects - before.connects;
                self.time_wait_left += r.counts.time_wait_left - before.time_wait_left;
                self.failed += r.counts.failed() - before.failed();
                self.last.insert(key, r.counts);
            }
        }
    }

    #[test]
    fn counts_are_the_kernels_per_comm_and_destination() {
        let t0 = Instant::now();
        let mut procs = Table::default();
        procs.0.insert(10, (100, Some("pod checkout".into())));
        procs.0.insert(11, (101, None));
        let mut kernel = Kernel::default();
        kernel.connect(10, "java", "10.0.0.1", 40, 2);
        kernel.connect(11, "curl", "10.0.0.1", 3, 0);
        let mut acc = Accumulator::new(10);
        // First seen at 0: Prometheus counts no increment in a first sample.
        let rows = scrape(&mut acc, &mut kernel, &mut procs, t0);
        assert!(rows.iter().all(|r| r.counts == Counts::default()), "{rows:?}");
        let rows = scrape(&mut acc, &mut kernel, &mut procs, t0);
        let java = rows.iter().find(|r| r.comm == "java").unwrap();
        assert_eq!(java.container, "pod checkout");
        assert_eq!(
            (java.netns.as_str(), java.dst.as_str(), java.dst_port.as_str()),
            ("4026531840", "10.0.0.1", "5432")
        );
        assert_eq!(
            (
                java.counts.connects,
                java.counts.time_wait_left,
                java.counts.addr_not_available()
            ),
            (42, 40, 2)
        );
        assert_eq!(rows.iter().find(|r| r.comm == "curl").unwrap().container, "");
        assert!(rows.iter().all(|r| r.comm != OTHER), "nothing to sum yet");
        // Read again after more connects: the difference is added once.
        kernel.connect(10, "java", "10.0.0.1", 8, 0);
        let rows = scrape(&mut acc, &mut kernel, &mut procs, t0 + POLL);
        assert_eq!(by_comm(&rows)["java"].connects, 50);
    }

    #[test]
    fn an_ipv4_mapped_destination_is_its_ipv4_address() {
        let mut procs = Table::default();
        procs.0.insert(1, (1, None));
        let mut kernel = Kernel::default();
        kernel.connect(1, "app", "::ffff:10.0.0.1", 1, 0);
        let rows = scrape(&mut Accumulator::new(5), &mut kernel, &mut procs, Instant::now());
        assert_eq!(rows[0].dst, "10.0.0.1");
    }

    #[test]
    fn the_tail_is_summed_into_other() {
        let t0 = Instant::now();
        let mut procs = Table::default();
        let mut kernel = Kernel::default();
        for pid in 1..=20u32 {
            procs.0.insert(pid, (u64::from(pid), None));
            kernel.connect(pid, &format!("app{pid}"), "10.0.0.1", u64::from(pid) * 10, 0);
        }
        let mut acc = Accumulator::new(5);
        let mut prometheus = Prometheus::default();
        prometheus.scrape(&scrape(&mut acc, &mut kernel, &mut procs, t0));
        let rows = scrape(&mut acc, &mut kernel, &mut procs, t0);
        assert_eq!(rows.len(), 6, "5 series and other");
        let shown: BTreeSet<&str> = rows.iter().map(|r| r.comm.as_str()).collect();
        for busiest in ["app16", "app17", "app18", "app19", "app20", OTHER] {
            assert!(shown.contains(busiest), "{shown:?}");
        }
        let other = rows.iter().find(|r| r.comm == OTHER).unwrap();
        assert_eq!(
            (
                other.container.as_str(),
                other.netns.as_str(),
                other.dst.as_str(),
                other.dst_port.as_str()
            ),
            ("", OTHER, OTHER, "")
        );
        assert_eq!(other.counts.connects, (1..=15).map(|p| p * 10).sum::<u64>());
        prometheus.scrape(&rows);
        assert_eq!(prometheus.connects, (1..=20).map(|p| p * 10).sum::<u64>());
        assert_eq!(acc.export(t0).1, 20, "series known before the cut");
    }

    #[test]
    fn an_eaddrnotavail_takes_the_place_of_a_busier_series() {
        let t0 = Instant::now();
        let mut procs = Table::default();
        let mut kernel = Kernel::default();
        for pid in 1..=3u32 {
            procs.0.insert(pid, (1, None));
            kernel.connect(pid, &format!("busy{pid}"), "10.0.0.1", 1000, 0);
        }
        let mut acc = Accumulator::new(3);
        let mut prometheus = Prometheus::default();
        let mut scrape_twice = |acc: &mut Accumulator, kernel: &mut Kernel, procs: &mut Table, now| {
            prometheus.scrape(&scrape(acc, kernel, procs, now));
            let rows = scrape(acc, kernel, procs, now);
            prometheus.scrape(&rows);
            (rows, prometheus.connects)
        };
        scrape_twice(&mut acc, &mut kernel, &mut procs, t0);
        procs.0.insert(9, (1, None));
        kernel.connect(9, "failing", "10.0.0.2", 0, 3);
        let (rows, connects) = scrape_twice(&mut acc, &mut kernel, &mut procs, t0 + POLL);
        let failing = by_comm(&rows)["failing"];
        assert_eq!((failing.addr_not_available(), failing.connects), (3, 3));
        // The series it displaced stops being exported; other gets nothing
        // it did not count: no connect is counted twice.
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(rows.iter().all(|r| r.comm != OTHER));
        assert_eq!(connects, 3003);
        // The displaced one goes on counting into other.
        kernel.connect(3, "busy3", "10.0.0.1", 7, 0);
        let (rows, connects) = scrape_twice(&mut acc, &mut kernel, &mut procs, t0 + 2 * POLL);
        assert_eq!(by_comm(&rows)[OTHER].connects, 7);
        assert_eq!(connects, 3010);
        // A quarter more than the smallest shown, and it is back, going on
        // from its value.
        kernel.connect(3, "busy3", "10.0.0.1", 300, 0);
        let (rows, connects) = scrape_twice(&mut acc, &mut kernel, &mut procs, t0 + 3 * POLL);
        assert_eq!(by_comm(&rows)["busy3"].connects, 1300);
        assert_eq!(connects, 3310);
    }

    #[test]
    fn exited_processes_are_forgotten_in_the_kernel_and_kept_in_the_counters() {
        let t0 = Instant::now();
        let mut procs = Table::default();
        procs.0.insert(7, (70, None));
        let mut kernel = Kernel::default();
        kernel.connect(7, "job", "10.0.0.1", 5, 0);
        let mut acc = Accumulator::new(5);
        let mut prometheus = Prometheus::default();
        prometheus.scrape(&scrape(&mut acc, &mut kernel, &mut procs, t0));
        // It exits; its last close lands after it exited.
        procs.0.remove(&7);
        let rows = scrape(&mut acc, &mut kernel, &mut procs, t0 + POLL);
        assert_eq!(by_comm(&rows)["job"].connects, 5);
        kernel.0.values_mut().for_each(|f| f.time_wait_left += 1);
        let rows = scrape(&mut acc, &mut kernel, &mut procs, t0 + 2 * POLL);
        assert_eq!(kernel.0.len(), 1, "still in the kernel's map within FORGET_AFTER");
        assert_eq!(by_comm(&rows)["job"].time_wait_left, 6);
        let rows = scrape(&mut acc, &mut kernel, &mut procs, t0 + POLL + FORGET_AFTER);
        assert!(kernel.0.is_empty(), "forgotten after FORGET_AFTER");
        assert_eq!(acc.flows(), 0);
        assert_eq!(
            by_comm(&rows)["job"],
            Counts {
                connects: 5,
                time_wait_left: 6,
                failures: [0; 8]
            }
        );
        prometheus.scrape(&rows);
        // Its series lingers, then is no longer exported (and nothing moves
        // into other).
        let rows = scrape(&mut acc, &mut kernel, &mut procs, t0 + POLL + FORGET_AFTER + LINGER);
        assert!(rows.is_empty(), "{rows:?}");
        // A new process of the same name to the same place: the series goes
        // on from its value.
        procs.0.insert(7, (700, None));
        kernel.connect(7, "job", "10.0.0.1", 2, 0);
        let rows = scrape(&mut acc, &mut kernel, &mut procs, t0 + 2 * LINGER);
        assert_eq!(by_comm(&rows)["job"].connects, 5, "its value of before first");
        prometheus.scrape(&rows);
        let rows = scrape(&mut acc, &mut kernel, &mut procs, t0 + 2 * LINGER);
        prometheus.scrape(&rows);
        assert_eq!(by_comm(&rows)["job"].connects, 7);
        assert_eq!((prometheus.connects, prometheus.time_wait_left), (7, 8));
    }

    #[test]
    fn a_reused_pid_is_another_process() {
        let t0 = Instant::now();
        let mut procs = Table::default();
        procs.0.insert(7, (70, None));
        let mut kernel = Kernel::default();
        kernel.connect(7, "old", "10.0.0.1", 5, 0);
        let mut acc = Accumulator::new(5);
        scrape(&mut acc, &mut kernel, &mut procs, t0);
        procs.0.insert(7, (71, None)); // exited, and the PID was given again
        scrape(&mut acc, &mut kernel, &mut procs, t0 + POLL);
        scrape(&mut acc, &mut kernel, &mut procs, t0 + POLL + FORGET_AFTER);
        assert!(kernel.0.is_empty(), "the old process's flows were forgotten");
    }

    #[test]
    fn a_full_map_forgets_exited_processes_at_once() {
        let t0 = Instant::now();
        let mut procs = Table::default();
        let mut kernel = Kernel::default();
        for pid in 0..PRESSURE as u32 {
            kernel.connect(pid + 1, "burst", "10.0.0.1", 1, 0); // every one already gone
        }
        let mut acc = Accumulator::new(5);
        scrape(&mut acc, &mut kernel, &mut procs, t0);
        assert!(kernel.0.is_empty());
        let rows = scrape(&mut acc, &mut kernel, &mut procs, t0);
        assert_eq!(by_comm(&rows)["burst"].connects, PRESSURE as u64);
    }

    #[test]
    fn no_series_with_max_zero() {
        let mut procs = Table::default();
        procs.0.insert(1, (1, None));
        let mut kernel = Kernel::default();
        kernel.connect(1, "app", "10.0.0.1", 4, 1);
        let mut acc = Accumulator::new(0);
        let now = Instant::now();
        let rows = scrape(&mut acc, &mut kernel, &mut procs, now);
        assert_eq!((rows.len(), rows[0].counts.connects), (1, 0), "other first at 0");
        let rows = scrape(&mut acc, &mut kernel, &mut procs, now);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].comm.as_str(), rows[0].counts.connects), (OTHER, 5));
    }

    /// Random connects, failures, exits and PID reuse over many scrapes:
    /// no series ever goes down (also when it comes back), at most `max + 1`
    /// are exported, and their increases sum to every connect, failure and
    /// TIME_WAIT the kernel counted once a second scrape follows.
    #[test]
    fn counters_never_go_down_and_count_everything_once() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let t0 = Instant::now();
        let mut procs = Table::default();
        let mut kernel = Kernel::default();
        let mut acc = Accumulator::new(4);
        let mut prometheus = Prometheus::default();
        let (mut connects, mut failed, mut time_wait_left) = (0u64, 0u64, 0u64);
        let mut starts = 0u64;
        for step in 0..600u32 {
            // Scrapes 20 s apart: some series linger out, some come back.
            let now = t0 + Duration::from_secs(20) * step;
            for _ in 0..next(6) {
                let pid = 1 + next(12) as u32;
                let start = procs.0.entry(pid).or_insert_with(|| {
                    starts += 1;
                    (starts, None)
                });
                let comm = format!("c{}", start.0 % 7);
                let dst = format!("10.0.0.{}", next(3));
                let (ok, fails) = (next(50) * next(2), next(3) * next(2));
                kernel.connect(pid, &comm, &dst, ok, fails);
                connects += ok + fails;
                failed += fails;
                time_wait_left += ok;
            }
            if next(3) == 0 {
                procs.0.remove(&(1 + next(12) as u32));
            }
            let rows = scrape(&mut acc, &mut kernel, &mut procs, now);
            assert!(rows.len() <= 5, "{} series exported", rows.len());
            prometheus.scrape(&rows);
            assert!(prometheus.connects <= connects, "step {step}");
            if next(2) == 0 {
                continue; // what a series counted first is exported later
            }
            let rows = scrape(&mut acc, &mut kernel, &mut procs, now);
            assert!(rows.len() <= 5, "{} series exported", rows.len());
            prometheus.scrape(&rows);
            assert_eq!(
                (prometheus.connects, prometheus.failed, prometheus.time_wait_left),
                (connects, failed, time_wait_left),
                "step {step}"
            );
        }
        assert!(prometheus.last.len() > 5, "series came and went");
    }

    #[test]
    fn eaddrnotavail_is_the_first_failure_class() {
        assert_eq!(FAILURE_CLASSES[ADDR_NOT_AVAILABLE], EADDRNOTAVAIL);
    }

    #[test]
    fn a_live_process_takes_the_place_of_an_exited_one() {
        let t0 = Instant::now();
        let mut procs = Table::default();
        let mut kernel = Kernel::default();
        procs.0.insert(1, (1, None));
        kernel.connect(1, "gone", "10.0.0.1", 500, 0);
        let mut acc = Accumulator::new(1);
        scrape(&mut acc, &mut kernel, &mut procs, t0);
        procs.0.remove(&1);
        procs.0.insert(2, (2, None));
        kernel.connect(2, "alive", "10.0.0.1", 10, 0);
        scrape(&mut acc, &mut kernel, &mut procs, t0 + POLL);
        let rows = scrape(&mut acc, &mut kernel, &mut procs, t0 + POLL + FORGET_AFTER);
        assert_eq!(by_comm(&rows).keys().collect::<Vec<_>>(), ["alive", OTHER]);
        let rows = scrape(&mut acc, &mut kernel, &mut procs, t0 + POLL + FORGET_AFTER);
        assert_eq!(
            (by_comm(&rows)["alive"].connects, by_comm(&rows)[OTHER].connects),
            (10, 0)
        );
    }

    #[test]
    fn start_time_is_field_22_and_zombies_are_gone() {
        let stat =
            "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 987654 12345 67 18446744073709551615";
        assert_eq!(start_ticks(stat), Some(987_654));
        assert_eq!(start_ticks(&stat.replace(") S ", ") Z ")), None);
        assert_eq!(start_ticks("garbage"), None);
    }
}
