//! `twscope lab`: the TIME_WAIT post's outage, reproduced in a minute and fixed.
//!
//! Two throwaway namespaces joined by a veth pair, addresses from the
//! benchmarking range 198.18.0.0/15 (not loopback, so `tcp_tw_reuse=2` does not
//! hide the problem):
//!
//! ```text
//!  client namespace                          server namespace
//!  198.18.0.2 (+ .3, .4 … for source-ips) ── 198.18.0.1:5432  ("the database")
//!  ports narrowed to --ports (default 1,000)
//! ```
//!
//! The client makes requests at `--rate`; twscope's own census of the client
//! namespace is sampled every second; the onset the [`twscope_core::plan`]
//! model predicts is set against the first `EADDRNOTAVAIL` observed.
//! Both namespaces are removed when the run ends, however it ends (drop) —
//! except by SIGKILL, which runs no drop: their names carry the owner's pid and
//! start time, so the next `twscope lab` (or `twscope lab --cleanup`) removes
//! them ([`crate::netns::remove_leftovers`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;
use twscope_core::kernel::PortRanges;
use twscope_core::status::{DestFilter, Selection, Status, StatusOptions};
use twscope_core::text::{rate, thousands};
use twscope_core::Severity;
use twscope_core::TcpState;
use twscope_core::Workload;

use crate::churn::{churn_with, connect, request, ChurnOptions, Progress};
use crate::netns::{enter_netns, link_veth, Netns};
use crate::server::Server;

/// Where "the database" listens.
pub const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)), 5432);
/// First port of the narrowed client range.
const RANGE_LOW: u16 = 40_000;
/// The widened range of `--fix wide-range` (what `twscope tune` proposes).
const WIDE_RANGE: (u16, u16) = (1024, 65535);
/// The kernel default range, for stating the scale.
const DEFAULT_RANGE_PORTS: f64 = 28_232.0;
/// Highest `--rate` accepted, in requests per second: the lab demonstrates
/// an outage on a narrowed range, it is not a load test.
pub const MAX_RATE: f64 = 5_000.0;
/// Longest `--duration` accepted, in seconds.
pub const MAX_DURATION_S: u64 = 120;
/// Most source addresses `--fix source-ips=N` may use (198.18.0.2 onwards).
pub const MAX_SOURCE_IPS: u8 = 16;

/// How the client uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The bypassed pool: connect, request, close — for every request.
    PerRequest,
    /// A fixed pool of persistent connections carries every request.
    Pooled,
}

/// A fix applied to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    /// `tcp_tw_reuse=1`: connect() takes over TIME_WAIT ports after 1 s.
    TwReuse,
    /// `ip_local_port_range = 1024 65535`.
    WideRange,
    /// Rotate over this many source addresses.
    SourceIps(u8),
    /// `SO_LINGER` 0: RST instead of FIN, no TIME_WAIT — and resets at the server.
    Linger0,
}

impl std::fmt::Display for Fix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fix::TwReuse => f.write_str("tw-reuse"),
            Fix::WideRange => f.write_str("wide-range"),
            Fix::SourceIps(n) => write!(f, "source-ips={n}"),
            Fix::Linger0 => f.write_str("linger0"),
        }
    }
}

impl std::str::FromStr for Fix {
    type Err = String;

    fn from_str(text: &str) -> Result<Fix, String> {
        match text {
            "tw-reuse" => Ok(Fix::TwReuse),
            "wide-range" => Ok(Fix::WideRange),
            "linger0" => Ok(Fix::Linger0),
            _ => match text.strip_prefix("source-ips=").map(str::parse::<u8>) {
                Some(Ok(n)) if (1..=MAX_SOURCE_IPS).contains(&n) => Ok(Fix::SourceIps(n)),
                _ => Err(format!(
                    "{text:?} is not a fix: use tw-reuse, wide-range, source-ips=N (N 1–{MAX_SOURCE_IPS}) or linger0"
                )),
            },
        }
    }
}

impl Serialize for Fix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct LabOptions {
    /// How the client uses connections: one per request, or a pool.
    pub mode: Mode,
    /// The fix applied to the client namespace, if any.
    pub fix: Option<Fix>,
    /// Requests per second.
    pub rate: f64,
    /// How long the client runs (at most [`MAX_DURATION_S`]).
    pub duration: Duration,
    /// Size of the client's narrowed port range.
    pub ports: u16,
    /// Connections of the pool in `pooled` mode.
    pub pool_size: usize,
}

impl Default for LabOptions {
    fn default() -> LabOptions {
        LabOptions {
            mode: Mode::PerRequest,
            fix: None,
            rate: 50.0,
            duration: Duration::from_secs(30),
            ports: 1000,
            pool_size: 10,
        }
    }
}

impl LabOptions {
    /// The hard caps: a lab is small and short by construction, and it must
    /// make at least one request (a run with none would report "FIXED").
    pub fn validate(&self) -> Result<(), String> {
        if !(self.rate > 0.0 && self.rate <= MAX_RATE) {
            return Err(format!(
                "--rate must be above 0 and at most {MAX_RATE} requests/s, not {}",
                number(self.rate)
            ));
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(MAX_DURATION_S) {
            return Err(format!("--duration must be 1–{MAX_DURATION_S} s"));
        }
        if !(10..=25_000).contains(&self.ports) {
            return Err("--ports must be 10–25000".to_string());
        }
        if !(1..=1000).contains(&self.pool_size) {
            return Err("--pool-size must be 1–1000".to_string());
        }
        if let Some(Fix::SourceIps(n)) = self.fix {
            if !(1..=MAX_SOURCE_IPS).contains(&n) {
                return Err(format!(
                    "--fix source-ips=N needs N from 1 to {MAX_SOURCE_IPS}, not {n}"
                ));
            }
        }
        if self.requests() == 0 {
            return Err(format!(
                "--rate {}/s for {} s makes no request (rate × duration rounds to 0): raise --rate or --duration",
                number(self.rate),
                number(self.duration.as_secs_f64())
            ));
        }
        Ok(())
    }

    /// Requests the client makes when none fails: rate × duration, rounded.
    pub fn requests(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).round() as u64
    }

    /// The client's `ip_local_port_range`.
    pub fn range(&self) -> (u16, u16) {
        match self.fix {
            Some(Fix::WideRange) => WIDE_RANGE,
            _ => (RANGE_LOW, RANGE_LOW + self.ports - 1),
        }
    }

    fn source_ips(&self) -> u8 {
        match self.fix {
            Some(Fix::SourceIps(n)) => n,
            _ => 1,
        }
    }

    /// The client's source addresses: 198.18.0.2, .3, …
    fn sources(&self) -> Vec<IpAddr> {
        (0..self.source_ips())
            .map(|i| IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2 + i)))
            .collect()
    }

    /// When the model says the first connect() fails, from the start; `None`
    /// when it never should. Same model code as `twscope plan`.
    pub fn predicted_onset_s(&self) -> Option<f64> {
        let new_connections_per_s = match (self.mode, self.fix) {
            // A pool opens its connections once, then none.
            (Mode::Pooled, _) => 0.0,
            // No TIME_WAIT at all: a closed port is free at once.
            (_, Some(Fix::Linger0)) => return None,
            _ => self.rate,
        };
        let workload = Workload {
            source_ips: u32::from(self.source_ips()),
            tw_reuse: self.fix == Some(Fix::TwReuse),
            ..Workload::new(new_connections_per_s, self.range(), PortRanges::default())
        };
        workload.plan().exhaustion_s
    }

    /// One line on what the narrowed range stands for.
    pub fn scale_note(&self) -> String {
        let (low, high) = self.range();
        let ports = f64::from(high - low) + 1.0;
        format!(
            "client port range {low}–{high} = {} ports; the kernel default 32768–60999 has 28,232, \
             so {}/s here behaves like {}/s to one destination on a default host",
            thousands(ports as u64),
            rate(self.rate),
            rate(self.rate * DEFAULT_RANGE_PORTS / ports)
        )
    }
}

/// A number as typed: 50, 0.5, 1e-300 (never hundreds of zeros).
fn number(value: f64) -> String {
    if value != 0.0 && value.abs() < 1e-3 {
        format!("{value:e}")
    } else {
        format!("{value}")
    }
}

/// One second of the run, as twscope's census of the client namespace sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Tick {
    /// Seconds since the client started.
    pub t_s: u64,
    /// Requests so far.
    pub requests_ok: u64,
    /// Requests that failed so far, for any reason.
    pub requests_failed: u64,
    /// TIME_WAIT sockets in the client namespace.
    pub time_wait: u64,
    /// Client sockets towards the server in any state; each holds a source
    /// port.
    pub in_use: u64,
    /// Ports the client has towards the server: the narrowed range, per
    /// source address × source addresses.
    pub available: u32,
    /// Share of the budget connect() cannot use (see `Destination::utilization`).
    pub utilization: f64,
    /// In use ÷ available.
    pub in_use_ratio: f64,
    /// Requests the client attempted per second since the previous tick,
    /// failed ones included: what the census cannot see.
    pub attempts_per_s: f64,
    /// Connections closed per second, from the TIME_WAIT ages: only those
    /// that got a port, so while connects fail the client attempts more
    /// (`attempts_per_s`).
    pub close_rate_per_s: f64,
    /// Seconds to exhaustion at the current close rate; null when not on
    /// course to run out.
    pub exhaustion_eta_s: Option<f64>,
    /// The forecast in a word: `now`, `12 s`, `limit`, `lvl 82%`, `never`.
    pub outlook: String,
    /// The server destination's severity; ok before it has any socket.
    pub severity: Severity,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct LabReport {
    /// How the client used connections.
    pub mode: Mode,
    /// The fix applied, if any.
    pub fix: Option<Fix>,
    /// Requests per second asked for (`--rate`).
    pub rate: f64,
    /// Ports of the client range.
    pub ports: u32,
    /// Source addresses the client used (1 unless `--fix source-ips=N`).
    pub source_ips: u8,
    /// How long the run took, in seconds, to a tenth.
    pub duration_s: f64,
    /// Requests answered.
    pub requests_ok: u64,
    /// Requests that failed, for any reason.
    pub requests_failed: u64,
    /// Failures that were EADDRNOTAVAIL ("cannot assign requested address").
    pub addr_not_available: u64,
    /// When the model (the one `twscope plan` runs) says the first
    /// `connect()` fails, in seconds from the start; null when it never should.
    pub predicted_onset_s: Option<f64>,
    /// First EADDRNOTAVAIL, from the start; null when none happened.
    pub observed_onset_s: Option<f64>,
    /// Connections the server saw reset (RST) instead of closed.
    pub server_resets: u64,
    /// The most TIME_WAIT sockets any tick saw in the client namespace.
    pub max_time_wait: u64,
    /// Stopped early by a signal.
    pub interrupted: bool,
    /// One sample per second of the run.
    pub timeline: Vec<Tick>,
    /// One line: whether the outage was reproduced (observed against
    /// predicted onset) or the fix held, and how many requests failed.
    pub verdict: String,
}

/// Why a lab could not run.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Not run as root: creating namespaces and veth pairs needs
    /// `CAP_SYS_ADMIN` and `CAP_NET_ADMIN`.
    #[error("twscope lab creates network namespaces: run it as root (it needs CAP_SYS_ADMIN and CAP_NET_ADMIN)")]
    NotRoot,
    /// Creating the namespaces, the veth pair, the addresses or the sysctls
    /// failed, or the client or sampler hit an I/O error.
    #[error("setting up the lab failed: {0}")]
    Setup(#[source] std::io::Error),
    /// The options are out of bounds ([`LabOptions::validate`]'s message).
    #[error("{0}")]
    Options(String),
}

/// Runs the lab, calling `on_tick` once a second (on this thread), and stops
/// early when `stop` is set. Namespaces are removed before it returns.
pub fn run(options: &LabOptions, stop: &AtomicBool, mut on_tick: impl FnMut(&Tick)) -> Result<LabReport, LabError> {
    options.validate().map_err(LabError::Options)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NotRoot);
    }
    let server_ns = Netns::new("lab-server").map_err(LabError::Setup)?;
    let client_ns = Netns::new("lab-client").map_err(LabError::Setup)?;
    let sources = options.sources();
    setup(options, &server_ns, &client_ns, &sources).map_err(LabError::Setup)?;
    let server = server_ns
        .run(|| Server::start(SERVER, 1))
        .map_err(LabError::Setup)?
        .map_err(LabError::Setup)?;

    let progress = Progress::default();
    let client_path = client_ns.path();
    let (tx, rx) = mpsc::channel::<Tick>();
    let start = Instant::now();
    let client_done = AtomicBool::new(false);
    let mut timeline = Vec::new();
    let outcome = std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            let result = enter_netns(&client_path).map(|()| run_client(options, &sources, &progress));
            client_done.store(true, Ordering::Relaxed);
            result
        });
        let (progress, client_done, client_path) = (&progress, &client_done, &client_path);
        // `move`: the sampler owns the sender, so the relay loop below ends
        // (Disconnected) when the sampler does.
        let sampler = scope.spawn(move || -> std::io::Result<()> {
            enter_netns(client_path)?;
            let mut second = 1;
            // Requests attempted up to the last tick, and when: the attempt rate.
            let mut attempted = (start, 0u64);
            loop {
                let due = start + Duration::from_secs(second);
                while Instant::now() < due && !client_done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let finished = client_done.load(Ordering::Relaxed);
                let t_s = second.min(start.elapsed().as_secs_f64().round() as u64).max(1);
                if let Ok(tick) = sample(t_s, progress, &mut attempted) {
                    if tx.send(tick).is_err() {
                        return Ok(());
                    }
                }
                if finished {
                    return Ok(());
                }
                second += 1;
            }
        });
        // This thread relays ticks and watches for a stop request.
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(tick) => {
                    on_tick(&tick);
                    timeline.push(tick);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if stop.load(Ordering::Relaxed) {
                progress.stop.store(true, Ordering::Relaxed);
            }
        }
        client.join().expect("lab client panicked").map_err(LabError::Setup)?;
        sampler.join().expect("lab sampler panicked").map_err(LabError::Setup)?;
        Ok::<_, LabError>(())
    });
    outcome?;
    let duration_s = start.elapsed().as_secs_f64();
    let server_resets = server.stats().resets.load(Ordering::Relaxed);
    drop(server);
    drop(client_ns);
    drop(server_ns);

    let (low, high) = options.range();
    let mut report = LabReport {
        mode: options.mode,
        fix: options.fix,
        rate: options.rate,
        ports: u32::from(high - low) + 1,
        source_ips: options.source_ips(),
        duration_s: (duration_s * 10.0).round() / 10.0,
        requests_ok: progress.ok.load(Ordering::Relaxed),
        requests_failed: progress.failed.load(Ordering::Relaxed),
        addr_not_available: progress.addr_not_available.load(Ordering::Relaxed),
        predicted_onset_s: options.predicted_onset_s(),
        observed_onset_s: progress
            .first_addr_not_available()
            .map(|d| (d.as_secs_f64() * 100.0).round() / 100.0),
        server_resets,
        max_time_wait: timeline.iter().map(|t| t.time_wait).max().unwrap_or(0),
        interrupted: stop.load(Ordering::Relaxed),
        timeline,
        verdict: String::new(),
    };
    report.verdict = verdict(&report);
    Ok(report)
}

fn setup(options: &LabOptions, server_ns: &Netns, client_ns: &Netns, sources: &[IpAddr]) -> std::io::Result<()> {
    link_veth(
        server_ns,
        &format!("{}/24", SERVER.ip()),
        client_ns,
        &format!("{}/24", sources[0]),
    )?;
    for extra in &sources[1..] {
        client_ns.add_address_to(&format!("{extra}/24"), "veth-b")?;
    }
    let (low, high) = options.range();
    client_ns.set_sysctl("net.ipv4.ip_local_port_range", &format!("{low} {high}"))?;
    if options.fix == Some(Fix::TwReuse) {
        client_ns.set_sysctl("net.ipv4.tcp_timestamps", "1")?;
        client_ns.set_sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    }
    Ok(())
}

/// The client's whole run, counted into `progress`.
fn run_client(options: &LabOptions, sources: &[IpAddr], progress: &Progress) {
    let count = options.requests();
    match options.mode {
        Mode::PerRequest => {
            let churn = ChurnOptions {
                count,
                rate_per_s: Some(options.rate),
                max_duration: options.duration,
                // One thread serves about 5,000 requests/s over veth.
                threads: 1 + (options.rate / 2000.0) as usize,
                request: true,
                sources: if options.source_ips() > 1 {
                    sources.to_vec()
                } else {
                    Vec::new()
                },
                linger_zero: options.fix == Some(Fix::Linger0),
                blocking: false,
            };
            churn_with(&[SERVER], &churn, progress);
        }
        Mode::Pooled => run_pool(options, count, progress),
    }
}

/// A pool of persistent connections carrying requests at the rate, round
/// robin; a broken connection is replaced (and the request counted failed).
fn run_pool(options: &LabOptions, count: u64, progress: &Progress) {
    let start = Instant::now();
    let deadline = start + options.duration;
    let mut pool: Vec<Option<std::net::TcpStream>> = (0..options.pool_size).map(|_| None).collect();
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / options.rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if Instant::now() >= deadline || progress.stop.load(Ordering::Relaxed) {
            break;
        }
        let slot = &mut pool[(i % options.pool_size as u64) as usize];
        if slot.is_none() {
            match connect(&SERVER, None, false) {
                Ok(stream) => *slot = Some(stream),
                Err(e) => {
                    progress.record::<()>(&Err(e), start);
                    continue;
                }
            }
        }
        let result = request(slot.as_mut().expect("connected above"));
        progress.record(&result, start);
        if result.is_err() {
            *slot = None;
        }
    }
}

/// twscope's census of the client namespace (the calling thread's), reduced
/// to the lab's one destination.
/// One tick: the census of the client namespace, and the requests attempted
/// since the `attempted` tick (updated here).
fn sample(
    t_s: u64,
    progress: &Progress,
    attempted: &mut (Instant, u64),
) -> Result<Tick, twscope_core::status::StatusError> {
    let options = StatusOptions::default();
    let selection = Selection {
        top: 1,
        dest: Some(DestFilter {
            addr: SERVER.ip(),
            port: Some(SERVER.port()),
        }),
    };
    let netns = twscope_core::netns::current("lab-client").unwrap_or(twscope_core::NetnsInfo {
        name: "lab-client".to_string(),
        inode: 0,
    });
    let status = Status::collect(&options, netns)?;
    let row = status.selected(&selection).0.first().copied();
    let (requests_ok, requests_failed) = (
        progress.ok.load(Ordering::Relaxed),
        progress.failed.load(Ordering::Relaxed),
    );
    let now = Instant::now();
    let attempts_per_s =
        (requests_ok + requests_failed - attempted.1) as f64 / now.duration_since(attempted.0).as_secs_f64().max(1e-3);
    *attempted = (now, requests_ok + requests_failed);
    Ok(Tick {
        t_s,
        requests_ok,
        requests_failed,
        attempts_per_s,
        time_wait: status.states.get(TcpState::TimeWait),
        in_use: row.map_or(0, |d| d.in_use),
        available: row.map_or(status.ephemeral.available, |d| d.available),
        utilization: row.map_or(0.0, |d| d.utilization),
        in_use_ratio: row.map_or(0.0, |d| d.in_use_ratio),
        close_rate_per_s: row.map_or(0.0, |d| d.close_rate_per_s),
        exhaustion_eta_s: row.and_then(|d| d.exhaustion_eta_s),
        outlook: row.map_or_else(|| "never".to_string(), |d| d.outlook.short()),
        severity: row.map_or(Severity::Ok, |d| d.severity),
    })
}

fn verdict(r: &LabReport) -> String {
    let what = match (r.mode, r.fix) {
        (Mode::Pooled, _) => format!("a pool of persistent connections at {} requests/s", rate(r.rate)),
        (_, Some(fix)) => format!("per-request connections at {}/s with the fix {fix}", rate(r.rate)),
        (_, None) => format!("per-request connections at {}/s", rate(r.rate)),
    };
    let predicted = match r.predicted_onset_s {
        Some(p) => format!("predicted at {p:.1} s"),
        None => "none predicted".to_string(),
    };
    match r.observed_onset_s {
        Some(seen) => format!(
            "OUTAGE REPRODUCED: {what} ran out of source ports — first 'cannot assign requested address' at \
             {seen:.1} s ({predicted}); {} of {} requests failed",
            thousands(r.requests_failed),
            thousands(r.requests_ok + r.requests_failed)
        ),
        None if r.requests_failed > 0 => format!(
            "{} of {} requests failed, none for lack of ports ({predicted})",
            thousands(r.requests_failed),
            thousands(r.requests_ok + r.requests_failed)
        ),
        None => match r.predicted_onset_s {
            Some(p) if p > r.duration_s => format!(
                "No failures within {:.0} s: {what} runs out at {p:.0} s by the model — run longer (--duration) to see it",
                r.duration_s
            ),
            _ => {
                let resets = if r.server_resets > 0 {
                    format!(", but the server saw {} connection resets instead of clean closes", thousands(r.server_resets))
                } else {
                    String::new()
                };
                format!(
                    "FIXED: {what} never ran out of ports (TIME_WAIT peaked at {}){resets}",
                    thousands(r.max_time_wait)
                )
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_parse_and_print() {
        for text in ["tw-reuse", "wide-range", "source-ips=2", "linger0"] {
            assert_eq!(text.parse::<Fix>().unwrap().to_string(), text);
        }
        assert!("source-ips=0".parse::<Fix>().is_err());
        assert!("source-ips=99".parse::<Fix>().unwrap_err().contains("source-ips=N"));
        assert!("more-ports".parse::<Fix>().is_err());
    }

    #[test]
    fn predictions_come_from_the_plan_model() {
        let base = LabOptions::default();
        assert_eq!(base.predicted_onset_s(), Some(20.0));
        let two = LabOptions {
            fix: Some(Fix::SourceIps(2)),
            ..base.clone()
        };
        assert_eq!(two.predicted_onset_s(), Some(40.0));
        for fix in [Fix::TwReuse, Fix::WideRange, Fix::Linger0] {
            assert_eq!(
                LabOptions {
                    fix: Some(fix),
                    ..base.clone()
                }
                .predicted_onset_s(),
                None,
                "{fix}"
            );
        }
        assert_eq!(
            LabOptions {
                mode: Mode::Pooled,
                ..base.clone()
            }
            .predicted_onset_s(),
            None
        );
        assert!(
            base.scale_note().contains("1,000 ports") && base.scale_note().contains("like 1,412/s"),
            "{}",
            base.scale_note()
        );
    }

    #[test]
    fn caps_are_enforced() {
        assert!(LabOptions {
            rate: 1e6,
            ..LabOptions::default()
        }
        .validate()
        .is_err());
        assert!(LabOptions {
            duration: Duration::from_secs(3600),
            ..LabOptions::default()
        }
        .validate()
        .is_err());
        assert!(LabOptions {
            ports: 5,
            ..LabOptions::default()
        }
        .validate()
        .is_err());
        assert!(LabOptions::default().validate().is_ok());
    }

    #[test]
    fn inputs_that_make_no_request_are_refused() {
        let base = LabOptions::default();
        let err = LabOptions {
            rate: 1e-300,
            ..base.clone()
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("--rate 1e-300/s for 30 s makes no request"), "{err}");
        assert!(!err.contains('\n'));
        // 0.01/s for 30 s is 0.3 requests: none; 0.05/s is 1.5: two.
        assert!(LabOptions {
            rate: 0.01,
            ..base.clone()
        }
        .validate()
        .is_err());
        assert_eq!(
            LabOptions {
                rate: 0.05,
                ..base.clone()
            }
            .requests(),
            2
        );
        assert!(LabOptions {
            rate: 0.05,
            ..base.clone()
        }
        .validate()
        .is_ok());
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::MIN_POSITIVE] {
            assert!(LabOptions { rate, ..base.clone() }.validate().is_err(), "{rate}");
        }
        assert!(LabOptions {
            duration: Duration::ZERO,
            ..base.clone()
        }
        .validate()
        .is_err());
        assert!(LabOptions {
            pool_size: 0,
            mode: Mode::Pooled,
            ..base.clone()
        }
        .validate()
        .is_err());
        assert!(LabOptions {
            ports: 0,
            ..base.clone()
        }
        .validate()
        .is_err());
        assert!(LabOptions {
            ports: 9,
            ..base.clone()
        }
        .validate()
        .is_err());
        // Built by hand (the parser refuses it): no source address at all.
        let err = LabOptions {
            fix: Some(Fix::SourceIps(0)),
            ..base.clone()
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("source-ips"), "{err}");
        assert!(LabOptions {
            fix: Some(Fix::SourceIps(MAX_SOURCE_IPS + 1)),
            ..base
        }
        .validate()
        .is_err());
    }
}
