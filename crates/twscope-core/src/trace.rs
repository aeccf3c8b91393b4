//! Who churns connections and who fails to connect: the model of a trace.
//!
//! TIME_WAIT sockets belong to no process, so the census says where the
//! ports go but not who spends them. The tracer (the `twscope-trace` crate,
//! eBPF on the `sock:inet_sock_set_state` and `syscalls:*_connect`
//! tracepoints) counts, per (process, network namespace, destination), the
//! connects, how they ended and how long they lived, and every connect that
//! failed with its errno. This module turns those counts into the report:
//! rates over the traced window, lifetime percentiles, the processes that look
//! like a bypassed connection pool, and the processes failing with
//! EADDRNOTAVAIL — which are often not the same process.
//!
//! Every number is computed here once ([`TraceReport::build`]); views render.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;

use crate::doctor::Language;
use crate::node::identity::{self, CgroupFacts};

/// Buckets of the lifetime histogram: bucket `i` holds lifetimes in
/// `[2^i, 2^(i+1))` µs; the last one everything longer.
pub const LIFETIME_BUCKETS: usize = 32;

/// The errno classes the kernel half counts per flow, in its order
/// (`enum failure_class` in `bpf/tcptrace.h`); anything else is `other`.
pub const FAILURE_CLASSES: [&str; 8] = [
    "EADDRNOTAVAIL",
    "EADDRINUSE",
    "ECONNREFUSED",
    "ETIMEDOUT",
    "ENETUNREACH",
    "EHOSTUNREACH",
    "ECONNRESET",
    "other",
];

/// The errno of the outage: no local port left for the destination.
pub const EADDRNOTAVAIL: &str = "EADDRNOTAVAIL";

/// The name of an errno the tracer may report (`E…`), or `errno N`.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        101 => "ENETUNREACH",
        104 => "ECONNRESET",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        113 => "EHOSTUNREACH",
        4 => "EINTR",
        11 => "EAGAIN",
        13 => "EACCES",
        1 => "EPERM",
        22 => "EINVAL",
        24 => "EMFILE",
        32 => "EPIPE",
        103 => "ECONNABORTED",
        105 => "ENOBUFS",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

/// What the kernel counted for one (process, namespace, destination) since
/// the tracer attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// Process (thread group) id, in the host's PID namespace.
    pub pid: u32,
    /// Inode of the socket's network namespace.
    pub netns: u64,
    /// Destination address.
    pub addr: IpAddr,
    /// Destination port.
    pub port: u16,
    /// The process's name (its main thread's `comm`) when it connected.
    pub comm: String,
    /// Its cgroup v2 id (0 or the root's on a cgroup v1 host).
    pub cgroup_id: u64,
    /// Connects that reached port selection (SYN_SENT), failed ones too.
    pub connects: u64,
    /// Connects that were established.
    pub established: u64,
    /// Closes as the active closer: each left a TIME_WAIT socket on a port.
    pub time_wait_left: u64,
    /// Connections aborted (RST) instead of closed.
    pub resets: u64,
    /// Closes of established connections, of every kind.
    pub closes: u64,
    /// Established connections (opened since attach) still open.
    pub concurrent: i64,
    /// Most established connections at once (opened since attach).
    pub max_concurrent: u64,
    /// Failed connects per class of [`FAILURE_CLASSES`].
    pub failures: [u64; FAILURE_CLASSES.len()],
    /// Lifetimes (SYN_SENT to close) of closed connections, log2 µs.
    pub lifetime_log2_us: [u64; LIFETIME_BUCKETS],
}

impl Flow {
    /// Adds `other`'s counts (the same key read again, or a retired flow).
    pub fn add(&mut self, other: &Flow) {
        self.connects += other.connects;
        self.established += other.established;
        self.time_wait_left += other.time_wait_left;
        self.resets += other.resets;
        self.closes += other.closes;
        self.concurrent += other.concurrent;
        self.max_concurrent = self.max_concurrent.max(other.max_concurrent);
        for (a, b) in self.failures.iter_mut().zip(other.failures) {
            *a += b;
        }
        for (a, b) in self.lifetime_log2_us.iter_mut().zip(other.lifetime_log2_us) {
            *a += b;
        }
    }

    /// All failed connects.
    pub fn failed(&self) -> u64 {
        self.failures.iter().sum()
    }
}

/// One failed connect, as it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub timestamp_ns: u64,
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The process's name.
    pub comm: String,
    /// Network namespace inode.
    pub netns: u64,
    /// Destination address.
    pub addr: IpAddr,
    /// Destination port.
    pub port: u16,
    /// The positive errno `connect()` returned.
    pub errno: i32,
}

/// What the kernel half could not record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Losses {
    /// Failure events lost to a full ring buffer (their counts in the flows
    /// are still exact).
    pub events_dropped: u64,
    /// New (process, destination) keys not counted: the flow map was full.
    pub flows_full: u64,
    /// Connections not followed: the socket map was full.
    pub sockets_full: u64,
}

impl Losses {
    /// All losses.
    pub fn total(&self) -> u64 {
        self.events_dropped + self.flows_full + self.sockets_full
    }
}

/// What the tracer read over one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Every flow, counted from attach to the end of the window.
    pub flows: Vec<Flow>,
    /// Failure events received during the window.
    pub failures: Vec<Failure>,
    /// What could not be recorded.
    pub losses: Losses,
    /// When the window began (the tracer attached), in seconds since the
    /// Unix epoch: to line it up with logs and other measurements.
    pub started_unix_s: f64,
    /// Length of the window, in seconds.
    pub duration_s: f64,
}

impl Sample {
    /// What happened between `earlier` and `self`, two reads of one attached
    /// tracer (`twscope top` reads it every refresh): the counters' growth,
    /// `self`'s failure events (each read drains them) and the time between.
    /// A flow `earlier` lacks is new and kept whole; one `self` lacks was
    /// forgotten and is left out. The high-water mark of connections open at
    /// once (`max_concurrent`) is kept as it is, since attach.
    pub fn since(&self, earlier: &Sample) -> Sample {
        type Key = (u32, u64, IpAddr, u16);
        let key = |f: &Flow| -> Key { (f.pid, f.netns, f.addr, f.port) };
        let before: BTreeMap<Key, &Flow> = earlier.flows.iter().map(|f| (key(f), f)).collect();
        let flows = self
            .flows
            .iter()
            .filter_map(|now| {
                let Some(then) = before.get(&key(now)) else {
                    return Some(now.clone());
                };
                let mut grown = now.clone();
                grown.connects = now.connects.saturating_sub(then.connects);
                grown.established = now.established.saturating_sub(then.established);
                grown.time_wait_left = now.time_wait_left.saturating_sub(then.time_wait_left);
                grown.resets = now.resets.saturating_sub(then.resets);
                grown.closes = now.closes.saturating_sub(then.closes);
                for (g, t) in grown.failures.iter_mut().zip(then.failures) {
                    *g = g.saturating_sub(t);
                }
                for (g, t) in grown.lifetime_log2_us.iter_mut().zip(then.lifetime_log2_us) {
                    *g = g.saturating_sub(t);
                }
                // Nothing happened: not a flow of this window.
                (grown.connects + grown.closes + grown.failed() > 0).then_some(grown)
            })
            .collect();
        let end = self.started_unix_s + self.duration_s;
        let start = earlier.started_unix_s + earlier.duration_s;
        Sample {
            flows,
            failures: self.failures.clone(),
            losses: self.losses,
            started_unix_s: start,
            duration_s: (end - start).max(0.0),
        }
    }
}

/// Who a traced process is, read from `/proc` while it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessIdentity {
    /// Its container, from the cgroup path the runtime gave it.
    pub container: Option<identity::Container>,
    /// Pod UID, from the kubelet's cgroup name.
    pub pod_uid: Option<String>,
    /// Pod name: the hostname of the process's UTS namespace, when it is in a
    /// pod.
    pub pod_name: Option<String>,
    /// The language runtime, if recognised ([`crate::runtime`]): the
    /// doctor's remedies speak to it.
    pub runtime: Option<Language>,
}

impl ProcessIdentity {
    /// Reads what `/proc/PID` says; a process already gone gives the default.
    pub fn read(proc_root: &Path, pid: u32) -> ProcessIdentity {
        let dir = proc_root.join(pid.to_string());
        let facts = crate::files::read_regular(&dir.join("cgroup"), 64 * 1024)
            .map(|text| identity::parse_proc_cgroup(&text))
            .unwrap_or_default();
        let CgroupFacts { container, pod } = facts;
        let pod_name = pod.as_ref().and_then(|_| crate::node::uts_hostname(pid));
        ProcessIdentity {
            container,
            pod_uid: pod.map(|(uid, _)| uid),
            pod_name,
            runtime: crate::runtime::detect(&dir),
        }
    }

    /// The container or pod in one short label (`pod NAME`, `containerd
    /// 4f1c2ab39d0e`), or `None` for a host process.
    pub fn label(&self) -> Option<String> {
        if let Some(name) = &self.pod_name {
            return Some(format!("pod {name}"));
        }
        if let Some(uid) = &self.pod_uid {
            return Some(format!("pod {uid}"));
        }
        self.container.as_ref().map(|c| {
            format!(
                "{} {}",
                c.runtime.as_deref().unwrap_or("container"),
                identity::short_id(&c.id)
            )
        })
    }
}

/// Lifetime percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Lifetimes {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Lifetimes {
    /// Percentiles of a log2-µs histogram; each is its bucket's geometric
    /// middle (`2^(i+0.5)` µs), so it is within a factor of √2 of the truth.
    pub fn of(histogram: &[u64; LIFETIME_BUCKETS]) -> Option<Lifetimes> {
        let total: u64 = histogram.iter().sum();
        if total == 0 {
            return None;
        }
        let at = |q: f64| {
            let rank = (q * total as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in histogram.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return 2f64.powf(i as f64 + 0.5) / 1000.0;
                }
            }
            2f64.powf(LIFETIME_BUCKETS as f64 - 0.5) / 1000.0
        };
        Some(Lifetimes {
            p50: at(0.5),
            p99: at(0.99),
        })
    }
}

/// One process's connections to one destination over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationTrace {
    /// Destination address.
    pub addr: IpAddr,
    /// Destination port.
    pub port: u16,
    /// Connect attempts (port selection reached), failed ones included.
    pub connects: u64,
    /// Attempts per second.
    pub connects_per_s: f64,
    /// Established connections.
    pub established: u64,
    /// Closes that left a TIME_WAIT socket (this process closed first).
    pub time_wait_left: u64,
    /// TIME_WAITs left per second: the port spend.
    pub time_wait_left_per_s: f64,
    /// Closes of established connections.
    pub closes: u64,
    /// Connections reset instead of closed.
    pub resets: u64,
    /// Lifetime percentiles of closed connections.
    pub lifetime_ms: Option<Lifetimes>,
    /// Most connections open at once (of those opened in the window).
    pub max_concurrent: u64,
    /// Failed connects by errno name.
    pub failures: BTreeMap<String, u64>,
    /// Failed connects per second.
    pub failures_per_s: f64,
    /// Whether this looks like a bypassed pool (see [`PoolBypass`]).
    pub pool_bypass: bool,
}

impl DestinationTrace {
    /// All failed connects.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Connects that failed with EADDRNOTAVAIL.
    pub fn addr_not_available(&self) -> u64 {
        self.failures.get(EADDRNOTAVAIL).copied().unwrap_or(0)
    }
}

/// One process over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessTrace {
    /// Process id.
    pub pid: u32,
    /// Its name.
    pub comm: String,
    /// Its network namespace's inode.
    pub netns: u64,
    /// Its container or pod label, if any.
    pub container: Option<String>,
    /// What `/proc` said about it.
    pub identity: ProcessIdentity,
    /// Its destinations, busiest first.
    pub destinations: Vec<DestinationTrace>,
    /// Whether any destination looks like a bypassed pool.
    pub pool_bypass: bool,
}

impl ProcessTrace {
    /// Connect attempts to every destination.
    pub fn connects(&self) -> u64 {
        self.destinations.iter().map(|d| d.connects).sum()
    }

    /// Failed connects to every destination.
    pub fn failed(&self) -> u64 {
        self.destinations.iter().map(|d| d.failed()).sum()
    }

    /// EADDRNOTAVAIL failures to every destination.
    pub fn addr_not_available(&self) -> u64 {
        self.destinations.iter().map(|d| d.addr_not_available()).sum()
    }

    /// Connects attempted per second, to every destination.
    pub fn connects_per_s(&self) -> f64 {
        self.destinations.iter().map(|d| d.connects_per_s).sum()
    }

    /// TIME_WAITs left per second, to every destination: its port spend.
    pub fn time_wait_left_per_s(&self) -> f64 {
        self.destinations.iter().map(|d| d.time_wait_left_per_s).sum()
    }

    /// Failed connects per second, to every destination.
    pub fn failures_per_s(&self) -> f64 {
        self.destinations.iter().map(|d| d.failures_per_s).sum()
    }
}

/// When a process's connections to one destination look like a bypassed
/// pool: many opened, short-lived, few at once, and most closes leave a
/// TIME_WAIT behind — the incident's "a new client per request".
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PoolBypass {
    /// At least this many connects in the window…
    pub min_connects: u64,
    /// …and at least this many per second.
    pub min_connects_per_s: f64,
    /// Median lifetime below this, in ms.
    pub max_median_lifetime_ms: f64,
    /// Connects at least this many times the most open at once (a pool of
    /// N reuses its N connections: this ratio stays near 1).
    pub min_connects_per_concurrent: f64,
    /// At least this share of closes left a TIME_WAIT.
    pub min_time_wait_share: f64,
}

impl Default for PoolBypass {
    fn default() -> PoolBypass {
        PoolBypass {
            min_connects: 20,
            min_connects_per_s: 2.0,
            max_median_lifetime_ms: 1000.0,
            min_connects_per_concurrent: 10.0,
            min_time_wait_share: 0.5,
        }
    }
}

impl PoolBypass {
    fn matches(&self, d: &DestinationTrace) -> bool {
        let short = d.lifetime_ms.is_some_and(|l| l.p50 < self.max_median_lifetime_ms);
        let few_at_once = d.connects as f64 >= self.min_connects_per_concurrent * d.max_concurrent.max(1) as f64;
        let leaves_time_wait = d.closes > 0 && d.time_wait_left as f64 >= self.min_time_wait_share * d.closes as f64;
        d.connects >= self.min_connects
            && d.connects_per_s >= self.min_connects_per_s
            && short
            && few_at_once
            && leaves_time_wait
    }
}

/// The answer to "who": the churning processes and the failing ones.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceVerdict {
    /// One line.
    pub summary: String,
    /// The evidence, a line per process.
    pub evidence: Vec<String>,
    /// PIDs flagged as a bypassed pool.
    pub churning: Vec<u32>,
    /// PIDs whose connects failed with EADDRNOTAVAIL.
    pub failing: Vec<u32>,
}

/// A whole trace: per process × destination, and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceReport {
    /// The processes, those with failures first, then by connects.
    pub processes: Vec<ProcessTrace>,
    /// Failure events lost to a full ring buffer.
    pub dropped: u64,
    /// Everything the kernel half could not record.
    pub losses: Losses,
    /// When the window began, in seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// Length of the window, in seconds.
    pub duration_s: f64,
    /// Who churns, who fails.
    pub verdict: TraceVerdict,
}

/// A process connecting to one destination during a `status --trace`
/// window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Connecting {
    /// Process id.
    pub pid: u32,
    /// Its name.
    pub comm: String,
    /// Its container or pod label, if any.
    pub container: Option<String>,
    /// Its language runtime, if recognised.
    pub runtime: Option<Language>,
    /// Connects attempted per second, failed ones included.
    pub connects_per_s: f64,
    /// Connects failed per second.
    pub failures_per_s: f64,
    /// Failed connects by errno name.
    pub failures: BTreeMap<String, u64>,
    /// TIME_WAITs it left per second.
    pub time_wait_left_per_s: f64,
    /// Whether it looks like a bypassed pool.
    pub pool_bypass: bool,
}

/// The trace window of a `status --trace` / `doctor --trace` run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceSummary {
    /// When the window began, in seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// Length of the window, in seconds.
    pub duration_s: f64,
    /// Who churns, who fails.
    pub verdict: TraceVerdict,
    /// What the kernel half could not record.
    pub losses: Losses,
    /// The runtimes the doctor's remedies speak to.
    pub runtimes: Vec<Language>,
}

/// One process's name and its flows by destination, while a report groups
/// them.
type ProcessFlows = (String, BTreeMap<(IpAddr, u16), Flow>);

/// Which flows a report keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceFilter {
    /// Only these network namespaces (inodes); empty = all.
    pub netns: Vec<u64>,
    /// Only this process.
    pub pid: Option<u32>,
    /// Only processes whose container id starts with this, or whose pod name
    /// or container label equals it.
    pub container: Option<String>,
}

impl TraceFilter {
    fn keeps(&self, flow: &Flow, identity: &ProcessIdentity) -> bool {
        if !self.netns.is_empty() && !self.netns.contains(&flow.netns) {
            return false;
        }
        if self.pid.is_some_and(|p| p != flow.pid) {
            return false;
        }
        if let Some(want) = &self.container {
            let by_id = identity
                .container
                .as_ref()
                .is_some_and(|c| c.id.starts_with(want.as_str()));
            let by_pod = identity.pod_name.as_deref() == Some(want.as_str());
            let by_label = identity.label().as_deref() == Some(want.as_str());
            if !(by_id || by_pod || by_label) {
                return false;
            }
        }
        true
    }
}

impl TraceReport {
    /// The report of one window. `identities` says who each PID is (read
    /// while it ran); a PID it lacks is reported with its kernel `comm` only.
    pub fn build(
        sample: &Sample,
        identities: &BTreeMap<u32, ProcessIdentity>,
        filter: &TraceFilter,
        rule: &PoolBypass,
    ) -> TraceReport {
        let duration = sample.duration_s.max(1e-3);
        let unknown = ProcessIdentity::default();
        // (pid, netns) → destinations; the same key read twice is summed.
        let mut grouped: BTreeMap<(u32, u64), ProcessFlows> = BTreeMap::new();
        for flow in &sample.flows {
            let identity = identities.get(&flow.pid).unwrap_or(&unknown);
            if !filter.keeps(flow, identity) {
                continue;
            }
            let entry = grouped
                .entry((flow.pid, flow.netns))
                .or_insert_with(|| (flow.comm.clone(), BTreeMap::new()));
            entry
                .1
                .entry((flow.addr, flow.port))
                .and_modify(|f| f.add(flow))
                .or_insert_with(|| flow.clone());
        }
        let mut processes: Vec<ProcessTrace> = grouped
            .into_iter()
            .map(|((pid, netns), (comm, flows))| {
                let identity = identities.get(&pid).cloned().unwrap_or_default();
                let mut destinations: Vec<DestinationTrace> =
                    flows.values().map(|f| destination(f, duration, rule)).collect();
                destinations.sort_by(|a, b| {
                    (b.failed(), b.connects)
                        .cmp(&(a.failed(), a.connects))
                        .then((a.addr, a.port).cmp(&(b.addr, b.port)))
                });
                ProcessTrace {
                    pid,
                    comm,
                    netns,
                    container: identity.label(),
                    pool_bypass: destinations.iter().any(|d| d.pool_bypass),
                    identity,
                    destinations,
                }
            })
            .collect();
        processes.sort_by(|a, b| {
            (b.failed(), b.connects())
                .cmp(&(a.failed(), a.connects()))
                .then(a.pid.cmp(&b.pid))
        });
        let verdict = verdict(&processes, duration);
        TraceReport {
            processes,
            dropped: sample.losses.events_dropped,
            losses: sample.losses,
            started_unix_s: sample.started_unix_s,
            duration_s: sample.duration_s,
            verdict,
        }
    }

    /// The processes connecting to `addr:port`, with their numbers there,
    /// busiest first.
    pub fn to_destination(&self, addr: IpAddr, port: u16) -> Vec<(&ProcessTrace, &DestinationTrace)> {
        let mut found: Vec<(&ProcessTrace, &DestinationTrace)> = self
            .processes
            .iter()
            .filter_map(|p| {
                p.destinations
                    .iter()
                    .find(|d| d.addr == addr && d.port == port)
                    .map(|d| (p, d))
            })
            .collect();
        found.sort_by_key(|(_, d)| std::cmp::Reverse((d.failed(), d.connects)));
        found
    }

    /// The processes connecting to `addr:port`, as `status --trace` shows
    /// them under the destination, failing first, then busiest.
    pub fn connecting(&self, addr: IpAddr, port: u16) -> Vec<Connecting> {
        self.to_destination(addr, port)
            .into_iter()
            .map(|(p, d)| Connecting {
                pid: p.pid,
                comm: p.comm.clone(),
                container: p.container.clone(),
                runtime: p.identity.runtime,
                connects_per_s: d.connects_per_s,
                failures_per_s: d.failures_per_s,
                failures: d.failures.clone(),
                time_wait_left_per_s: d.time_wait_left_per_s,
                pool_bypass: d.pool_bypass,
            })
            .collect()
    }

    /// The runtimes the doctor's remedies should speak to: those of the
    /// churning processes, else of the failing ones, else of the busiest.
    pub fn runtimes(&self) -> Vec<Language> {
        let of = |pids: &[u32]| -> Vec<Language> {
            let mut found: Vec<Language> = self
                .processes
                .iter()
                .filter(|p| pids.contains(&p.pid))
                .filter_map(|p| p.identity.runtime)
                .collect();
            found.sort();
            found.dedup();
            found
        };
        let churning = of(&self.verdict.churning);
        if !churning.is_empty() {
            return churning;
        }
        let failing = of(&self.verdict.failing);
        if !failing.is_empty() {
            return failing;
        }
        self.culprit().and_then(|p| p.identity.runtime).into_iter().collect()
    }

    /// What a status report carries of the trace besides the per-destination
    /// processes.
    pub fn summary(&self) -> TraceSummary {
        TraceSummary {
            started_unix_s: self.started_unix_s,
            duration_s: self.duration_s,
            verdict: self.verdict.clone(),
            losses: self.losses,
            runtimes: self.runtimes(),
        }
    }

    /// The process most responsible: the first churning one, else the
    /// busiest.
    pub fn culprit(&self) -> Option<&ProcessTrace> {
        self.processes
            .iter()
            .find(|p| p.pool_bypass)
            .or_else(|| self.processes.iter().max_by_key(|p| p.connects()))
    }
}

fn destination(flow: &Flow, duration: f64, rule: &PoolBypass) -> DestinationTrace {
    let failures: BTreeMap<String, u64> = FAILURE_CLASSES
        .iter()
        .zip(flow.failures)
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| (name.to_string(), n))
        .collect();
    let mut d = DestinationTrace {
        addr: flow.addr,
        port: flow.port,
        connects: flow.connects,
        connects_per_s: flow.connects as f64 / duration,
        established: flow.established,
        time_wait_left: flow.time_wait_left,
        time_wait_left_per_s: flow.time_wait_left as f64 / duration,
        closes: flow.closes,
        resets: flow.resets,
        lifetime_ms: Lifetimes::of(&flow.lifetime_log2_us),
        max_concurrent: flow.max_concurrent,
        failures_per_s: flow.failed() as f64 / duration,
        failures,
        pool_bypass: false,
    };
    d.pool_bypass = rule.matches(&d);
    d
}

fn who(p: &ProcessTrace) -> String {
    match &p.container {
        Some(c) => format!("{} (pid {}, {c})", p.comm, p.pid),
        None => format!("{} (pid {})", p.comm, p.pid),
    }
}

fn verdict(processes: &[ProcessTrace], duration: f64) -> TraceVerdict {
    let mut evidence = Vec::new();
    let churning: Vec<&ProcessTrace> = processes.iter().filter(|p| p.pool_bypass).collect();
    let failing: Vec<&ProcessTrace> = processes.iter().filter(|p| p.addr_not_available() > 0).collect();
    for p in &churning {
        for d in p.destinations.iter().filter(|d| d.pool_bypass) {
            let lifetime = d.lifetime_ms.map(|l| format!("{:.1} ms", l.p50)).unwrap_or_default();
            evidence.push(format!(
                "{} opens {:.0} connections/s to {}, median lifetime {lifetime}, at most {} at once, {} of {} closes left a TIME_WAIT: a connection per request, not a pool",
                who(p),
                d.connects_per_s,
                crate::status::endpoint(&d.addr.to_string(), d.port),
                d.max_concurrent,
                d.time_wait_left,
                d.closes,
            ));
        }
    }
    for p in &failing {
        for d in p.destinations.iter().filter(|d| d.addr_not_available() > 0) {
            evidence.push(format!(
                "{} failed {} of {} connects to {} with EADDRNOTAVAIL ({:.1}/s): no local port left",
                who(p),
                d.addr_not_available(),
                d.connects,
                crate::status::endpoint(&d.addr.to_string(), d.port),
                d.addr_not_available() as f64 / duration,
            ));
        }
    }
    // The failing process is often not the one spending the ports.
    for f in &failing {
        let others: Vec<String> = churning
            .iter()
            .filter(|c| c.netns == f.netns && c.pid != f.pid)
            .map(|c| who(c))
            .collect();
        if !others.is_empty() && !f.pool_bypass {
            evidence.push(format!(
                "{} fails, but the ports are spent by {} in the same network namespace",
                who(f),
                others.join(", ")
            ));
        }
    }
    let summary = match (churning.as_slice(), failing.as_slice()) {
        ([], []) => "no process churns connections and no connect failed with EADDRNOTAVAIL".to_string(),
        (c, []) => format!(
            "{} churn{} connections (a bypassed pool); no connect failed yet",
            c.iter().map(|p| who(p)).collect::<Vec<_>>().join(", "),
            if c.len() == 1 { "s" } else { "" }
        ),
        ([], f) => format!(
            "{} cannot connect: EADDRNOTAVAIL",
            f.iter().map(|p| who(p)).collect::<Vec<_>>().join(", ")
        ),
        (c, f) => format!(
            "{} cannot connect (EADDRNOTAVAIL); {} churn{} connections",
            f.iter().map(|p| who(p)).collect::<Vec<_>>().join(", "),
            c.iter().map(|p| who(p)).collect::<Vec<_>>().join(", "),
            if c.len() == 1 { "s" } else { "" }
        ),
    };
    TraceVerdict {
        summary,
        evidence,
        churning: churning.iter().map(|p| p.pid).collect(),
        failing: failing.iter().map(|p| p.pid).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(pid: u32, connects: u64, tw: u64, max_concurrent: u64, lifetime_bucket: usize) -> Flow {
        let mut lifetime = [0; LIFETIME_BUCKETS];
        lifetime[lifetime_bucket] = tw;
        Flow {
            pid,
            netns: 4026531840,
            addr: "10.0.0.1".parse().unwrap(),
            port: 5432,
            comm: format!("app{pid}"),
            cgroup_id: 0,
            connects,
            established: connects,
            time_wait_left: tw,
            resets: 0,
            closes: tw,
            concurrent: 0,
            max_concurrent,
            failures: [0; 8],
            lifetime_log2_us: lifetime,
        }
    }

    fn report(flows: Vec<Flow>, duration_s: f64) -> TraceReport {
        let sample = Sample {
            flows,
            duration_s,
            ..Sample::default()
        };
        TraceReport::build(
            &sample,
            &BTreeMap::new(),
            &TraceFilter::default(),
            &PoolBypass::default(),
        )
    }

    #[test]
    fn since_is_the_growth_between_two_reads() {
        let mut grown = flow(1, 300, 280, 4, 3);
        grown.failures[0] = 7;
        let earlier = Sample {
            flows: vec![flow(1, 100, 90, 3, 3), flow(2, 50, 50, 1, 3)],
            started_unix_s: 1000.0,
            duration_s: 2.0,
            ..Sample::default()
        };
        let now = Sample {
            // pid 2 did nothing more; pid 3 is new.
            flows: vec![grown, flow(2, 50, 50, 1, 3), flow(3, 5, 5, 1, 3)],
            started_unix_s: 1000.0,
            duration_s: 4.0,
            ..Sample::default()
        };
        let window = now.since(&earlier);
        assert_eq!((window.started_unix_s, window.duration_s), (1002.0, 2.0));
        let pids: Vec<u32> = window.flows.iter().map(|f| f.pid).collect();
        assert_eq!(pids, [1, 3]);
        let one = &window.flows[0];
        assert_eq!(
            (one.connects, one.time_wait_left, one.closes, one.failures[0]),
            (200, 190, 190, 7)
        );
        assert_eq!(one.lifetime_log2_us[3], 190);
        assert_eq!(one.max_concurrent, 4);
        assert_eq!(window.flows[1].connects, 5);
    }

    #[test]
    fn the_churner_is_flagged_and_the_pool_is_not() {
        // 1,000 connects in 10 s living ~2 ms, 3 at once: a connection per
        // request. The pool opened 8 over the window and kept them.
        let mut pool = flow(2, 8, 0, 8, 0);
        pool.concurrent = 8;
        let r = report(vec![flow(1, 1000, 1000, 3, 11), pool], 10.0);
        assert_eq!(r.verdict.churning, vec![1]);
        let churner = r.processes.iter().find(|p| p.pid == 1).unwrap();
        assert!(churner.pool_bypass);
        assert_eq!(churner.destinations[0].connects_per_s, 100.0);
        assert!(!r.processes.iter().find(|p| p.pid == 2).unwrap().pool_bypass);
    }

    #[test]
    fn the_failing_process_is_named_apart_from_the_churner() {
        let churner = flow(1, 1000, 1000, 3, 11);
        let mut failing = flow(2, 50, 0, 1, 0);
        failing.failures[0] = 40;
        let r = report(vec![churner, failing], 10.0);
        assert_eq!(r.verdict.failing, vec![2]);
        assert_eq!(r.processes[0].pid, 2, "failures sort first");
        assert_eq!(r.processes[0].destinations[0].failures.get("EADDRNOTAVAIL"), Some(&40));
        assert!(
            r.verdict.evidence.iter().any(|e| e.contains("spent by app1 (pid 1)")),
            "{:?}",
            r.verdict.evidence
        );
    }

    #[test]
    fn percentiles_come_from_the_buckets() {
        let mut h = [0; LIFETIME_BUCKETS];
        h[10] = 99; // ~1.4 ms
        h[20] = 1; // ~1.5 s
        let l = Lifetimes::of(&h).unwrap();
        assert!((l.p50 - 2f64.powf(10.5) / 1000.0).abs() < 1e-9);
        assert!((l.p99 - 2f64.powf(10.5) / 1000.0).abs() < 1e-9);
        h[20] = 2;
        assert!((Lifetimes::of(&h).unwrap().p99 - 2f64.powf(20.5) / 1000.0).abs() < 1e-6);
        assert_eq!(Lifetimes::of(&[0; LIFETIME_BUCKETS]), None);
    }

    #[test]
    fn an_empty_window_says_nothing_happened() {
        let r = report(vec![], 2.0);
        assert!(r.processes.is_empty());
        assert!(r.verdict.summary.starts_with("no process"));
    }
}
