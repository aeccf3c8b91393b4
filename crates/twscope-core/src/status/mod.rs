//! The `twscope status` report: census + settings + capacity model, ready to
//! render as text or JSON. Its serialised form is the documented JSON schema.
//!
//! - `select`: which destinations a view shows (`--top`, `--dest`) and the
//!   JSON report of them;
//! - `aggregate`: tuples into destinations, destinations into one sum;
//! - `verdict`: where a destination is heading and the one-line verdict, in words.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use serde::Serialize;

use crate::capacity::{self, Assessment, ModelParams, PortBudget, Severity, Thresholds};
use crate::census::{Census, StateCounts, TupleKey, TupleStats};
use crate::kernel::{self, Conntrack, Counters, ReadError, Settings};
use crate::linux::{self, TimeWaitLifetime};
use crate::netns::NetnsInfo;
use crate::owners::{Owner, Owners, ProcessScan};
use crate::sockdiag::{DumpError, TcpState};
use crate::text::{rate, thousands};

/// How to compute: the model's knobs. Which destinations a view shows is a
/// [`Selection`], applied after collection, so every consumer of a
/// [`Status`] (doctor, tune, the exporter, the lab) sees every destination.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusOptions {
    /// Close-rate window in seconds (1–60).
    pub window_s: u32,
    /// Utilization levels of warning and critical.
    pub thresholds: Thresholds,
    /// Also find the processes holding each destination's live sockets
    /// (`--processes`, [`crate::owners`]): a pass over `/proc` after the dump.
    pub processes: bool,
}

impl Default for StatusOptions {
    fn default() -> StatusOptions {
        StatusOptions {
            window_s: 10,
            thresholds: Thresholds::default(),
            processes: false,
        }
    }
}

mod aggregate;
mod select;
mod verdict;

pub use crate::capacity::Outlook;
use aggregate::destination;
pub use aggregate::DestinationSum;
pub use select::{DestFilter, Selection, StatusReport};
pub use verdict::verdict;

/// Why a status could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The sock_diag dump of the sockets failed.
    #[error(transparent)]
    Dump(#[from] DumpError),
    /// A sysctl, counter or other `/proc` file could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The ephemeral port range and what is left of it for `connect()`.
#[derive(Debug, Clone, Serialize)]
pub struct Ephemeral {
    /// First port of `ip_local_port_range`, inclusive.
    pub low: u16,
    /// Last port of `ip_local_port_range`, inclusive.
    pub high: u16,
    /// Ports in the range (inclusive).
    pub size: u32,
    /// Reserved ports inside the range.
    pub reserved: u32,
    /// Listening ports inside the range (not reserved): `connect()` skips them.
    pub listeners_in_range: Vec<u16>,
    /// Ports each (source, destination) tuple may use.
    pub available: u32,
}

/// One source address's share of a destination.
#[derive(Debug, Clone, Serialize)]
pub struct SourceUse {
    /// The source address.
    pub addr: String,
    /// Its sockets towards the destination, any state.
    pub in_use: u64,
    /// Of which TIME_WAIT.
    pub time_wait: u64,
    /// Blocking sockets ÷ its budget (see [`Destination::utilization`]).
    pub utilization: f64,
    /// In-use sockets ÷ its budget (see [`Destination::in_use_ratio`]).
    pub in_use_ratio: f64,
}

/// Outbound connections to one destination (address, port).
#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    /// Address without brackets.
    pub addr: String,
    /// Destination port.
    pub port: u16,
    /// Its sockets in TIME_WAIT, all source addresses together.
    pub time_wait: u64,
    /// Its sockets in ESTABLISHED, all source addresses together.
    pub established: u64,
    /// Its client sockets in any state, all source addresses together; each
    /// holds a source port.
    pub in_use: u64,
    /// Ports available towards it: the per-source budget × source addresses.
    pub available: u32,
    /// The share of the budget `connect()` cannot use: sockets that block a
    /// port ÷ available, of the busiest source address (a source runs out
    /// when its own budget is gone). What the severity, the verdict, the UTIL
    /// column and `twscope_destination_utilization_ratio` show. Without
    /// tw_reuse every socket blocks, so it equals `in_use_ratio`.
    pub utilization: f64,
    /// Sockets holding a 4-tuple ÷ available, of the busiest source: what
    /// `ss` suggests, TIME_WAIT sockets tw_reuse may take over included.
    pub in_use_ratio: f64,
    /// Whether tcp_tw_reuse applies (TIME_WAIT older than the reuse delay
    /// does not block a port).
    pub tw_reuse: bool,
    /// Connections that closed and entered TIME_WAIT per second, over the
    /// rate window: completed connections only. While connects fail with
    /// EADDRNOTAVAIL the application attempts more than this.
    pub close_rate_per_s: f64,
    /// The close rate the budget sustains ([`crate::capacity::max_sustainable_rate`]).
    pub max_rate_per_s: f64,
    /// Seconds until the first source runs out at the current rate; null
    /// when not on course to, or at the limit ([`Outlook::eta_s`]).
    pub exhaustion_eta_s: Option<f64>,
    /// Where it is heading: the most urgent outlook of its sources
    /// (`exhausted_now`, `exhausted_in`, `at_limit`, `levels_off`, `never`).
    pub outlook: Outlook,
    /// The utilization the busiest source levels off at if the close rate
    /// stays as it is (above 1: it runs out instead).
    pub steady_utilization: f64,
    /// Ok, warning or critical, from `utilization` and the forecast.
    pub severity: Severity,
    /// Its sockets by state.
    pub states: StateCounts,
    /// Per source address, busiest first.
    pub sources: Vec<SourceUse>,
    /// The processes holding its live sockets, most sockets first; empty
    /// when it has none (TIME_WAIT sockets belong to no process) or none was
    /// found. Only with [`StatusOptions::processes`]: `None` (and absent
    /// from the JSON) otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<Vec<Owner>>,
    /// The processes that opened connections to it during a trace window
    /// (`status --trace`, [`Status::with_trace`]), failing first: their
    /// attempts and failures per second. `None` (absent from the JSON)
    /// without a trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connecting: Option<Vec<crate::trace::Connecting>>,
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    /// Bound address without brackets (`0.0.0.0`, `::` for any).
    pub addr: String,
    /// The listening port. Inside the ephemeral range and not reserved, it
    /// is taken out of every destination's budget.
    pub port: u16,
}

/// Server-side sockets on one listening port.
#[derive(Debug, Clone, Serialize)]
pub struct Inbound {
    /// The listening port these sockets were accepted on.
    pub port: u16,
    /// Of them, TIME_WAIT: connections this host closed first. They cost
    /// memory and TIME_WAIT buckets, but no ephemeral port.
    pub time_wait: u64,
    /// Of them, ESTABLISHED.
    pub established: u64,
    /// Server-side sockets on the port in any state.
    pub total: u64,
}

/// The one-line answer for a namespace, or for the destinations a
/// `--dest` selection keeps.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The worst destination's severity (ok when there are no outbound
    /// connections); `twscope status` exits with its
    /// [`Severity::exit_code`].
    pub severity: Severity,
    /// One line naming the worst destination and the likely cause.
    pub summary: String,
}

/// The TIME_WAIT lifetime the model uses, and what the dump shows of it.
#[derive(Debug, Clone, Serialize)]
pub struct TimeWaitHold {
    /// The kernel's tick rate.
    pub hz: u32,
    /// The timer-wheel bucket a 60 s timer falls in, seconds: the most a
    /// socket outlives its nominal 60 s.
    pub granularity_s: f64,
    /// The mean lifetime the model holds a port for (60 s + half a bucket).
    pub mean_s: f64,
    /// The longest lifetime.
    pub max_s: f64,
    /// TIME_WAIT sockets in this dump past their nominal 60 s.
    pub past_nominal_expiry: u64,
}

/// What one kernel read gathered; [`Status::build`] turns it into the report
/// without further I/O.
#[derive(Debug, Clone)]
pub struct Readings {
    /// The socket census.
    pub census: Census,
    /// The namespace's sysctls.
    pub settings: Settings,
    /// Its counters.
    pub counters: Counters,
    /// conntrack, where loaded.
    pub conntrack: Option<Conntrack>,
    /// Host name.
    pub host: String,
    /// Kernel release.
    pub kernel: String,
    /// Which namespace.
    pub netns: NetnsInfo,
    /// What the dump cost.
    pub dump: DumpInfo,
    /// The kernel's TIME_WAIT lifetime.
    pub time_wait: TimeWaitLifetime,
}

/// What the sock_diag dump cost.
#[derive(Debug, Clone, Serialize)]
pub struct DumpInfo {
    /// Sockets the dump returned, in every state.
    pub sockets: u64,
    /// Wall-clock time of the dump (listeners, then IPv4 and IPv6 in
    /// parallel), in milliseconds, to the microsecond.
    pub duration_ms: f64,
}

/// The whole report. Serialises to the JSON schema documented in the README.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Host name of the current UTS namespace.
    pub host: String,
    /// The network namespace every number below belongs to.
    pub netns: NetnsInfo,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Every socket of the namespace by state, listeners included, as
    /// `ss -tan` counts them.
    pub states: StateCounts,
    /// The ephemeral port range and the budget each tuple has of it.
    pub ephemeral: Ephemeral,
    /// The sysctls the model read.
    pub settings: Settings,
    /// TIME_WAIT counters at collection time, cumulative since boot (a rate
    /// needs two reads).
    pub counters: Counters,
    /// conntrack fill; `None` where netfilter conntrack is not loaded.
    pub conntrack: Option<Conntrack>,
    /// The close-rate window the rates were computed over, in seconds (1–60).
    pub window_s: u32,
    /// The utilization levels of warning and critical the severities came
    /// from.
    pub thresholds: Thresholds,
    /// How long TIME_WAIT really holds a port on this kernel.
    pub time_wait_lifetime: TimeWaitHold,
    /// Every outbound destination, busiest (in use) first. Views select from
    /// it with [`Status::report`]; serialised only there.
    #[serde(skip)]
    pub destinations: Vec<Destination>,
    /// Server-side sockets per listening port, most TIME_WAIT first. Kept
    /// apart from the port budget: inbound TIME_WAIT takes no ephemeral port.
    pub inbound: Vec<Inbound>,
    /// Every listening socket, by port.
    pub listeners: Vec<Listener>,
    /// The namespace's verdict, over every destination (serialised by
    /// [`Status::report`], which may narrow it to `--dest`).
    #[serde(skip)]
    pub verdict: Verdict,
    /// How many sockets the dump saw and how long it took.
    pub dump: DumpInfo,
    /// With [`StatusOptions::processes`]: how many processes were read and
    /// could not be (flattened: `processes_scanned`, `processes_unreadable`,
    /// `sockets_without_owner`, `processes_missing`); `None`, and absent from
    /// the JSON, otherwise.
    #[serde(flatten)]
    pub process_scan: Option<ProcessScan>,
    /// With a trace window ([`Status::with_trace`]): its length, verdict and
    /// losses; `None`, and absent from the JSON, otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<crate::trace::TraceSummary>,
}

impl Status {
    /// Reads the calling thread's network namespace (enter it first) and
    /// builds the report.
    pub fn collect(options: &StatusOptions, netns: NetnsInfo) -> Result<Status, StatusError> {
        let proc_root = Path::new("/proc");
        let settings = Settings::read(proc_root)?;
        let started = Instant::now();
        let census = if options.processes {
            Census::collect_with_inodes()?
        } else {
            Census::collect()?
        };
        let dump = DumpInfo {
            sockets: census.sockets,
            duration_ms: (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        };
        let readings = Readings {
            census,
            settings,
            // /proc/net follows the main thread; /proc/thread-self/net follows
            // this one, which is what a caller that entered a namespace on a
            // worker thread (`twscope lab`) needs. Same thing on the main thread.
            counters: Counters::read(Path::new("/proc/thread-self"))?,
            conntrack: Conntrack::read(proc_root)?,
            host: kernel::hostname(proc_root)?,
            kernel: kernel::kernel_release(proc_root)?,
            netns,
            dump,
            time_wait: TimeWaitLifetime::of_running_kernel(),
        };
        // Right after the dump, so that few sockets close in between.
        let owners = options
            .processes
            .then(|| Owners::find(proc_root, readings.netns.inode, &readings.census.live_inodes));
        let status = Status::build(readings, options);
        Ok(match owners {
            Some(owners) => status.with_owners(&owners),
            None => status,
        })
    }

    /// The report with each destination's [`Destination::processes`] and
    /// the scan's numbers ([`Status::process_scan`]) filled in from `owners`.
    pub fn with_owners(mut self, owners: &Owners) -> Status {
        for d in &mut self.destinations {
            let owned = d.addr.parse().map(|addr| owners.of(addr, d.port)).unwrap_or_default();
            d.processes = Some(owned);
        }
        self.process_scan = Some(owners.scan.clone());
        self
    }

    /// The report with each destination's [`Destination::connecting`] and
    /// the window's summary ([`Status::trace`]) from a trace of this
    /// namespace.
    pub fn with_trace(mut self, trace: &crate::trace::TraceReport) -> Status {
        for d in &mut self.destinations {
            let connecting = d
                .addr
                .parse()
                .map(|addr| trace.connecting(addr, d.port))
                .unwrap_or_default();
            d.connecting = Some(connecting);
        }
        self.trace = Some(trace.summary());
        self
    }

    /// Builds the report from one kernel read (no I/O).
    pub fn build(readings: Readings, options: &StatusOptions) -> Status {
        let Readings {
            census,
            settings,
            counters,
            conntrack,
            host,
            kernel,
            netns,
            dump,
            time_wait,
        } = readings;
        let census = &census;
        let range = (settings.port_range_low, settings.port_range_high);
        let listeners_in_range: Vec<u16> = census
            .listeners
            .ports()
            .filter(|&p| linux::listener_takes_a_port(p, range, |p| settings.reserved_ports.contains(p)))
            .collect();
        let budget = PortBudget {
            range_size: settings.range_size(),
            reserved: settings.reserved_in_range(),
            listeners: listeners_in_range.len() as u32,
        };
        let params = ModelParams {
            window_s: options.window_s,
            thresholds: options.thresholds,
            reuse_delay_ms: settings.reuse_delay_ms(),
            time_wait_s: time_wait.mean_s(),
            time_wait_spread_s: time_wait.spread_s(),
        };

        // Group tuples by destination; assess each tuple on its own budget.
        let mut by_destination: BTreeMap<(IpAddr, u16), Vec<(&TupleKey, &TupleStats)>> = BTreeMap::new();
        for (key, stats) in &census.outbound {
            by_destination
                .entry((key.dst, key.dst_port))
                .or_default()
                .push((key, stats));
        }
        let mut destinations: Vec<Destination> = by_destination
            .into_iter()
            .map(|((addr, port), tuples)| destination(addr, port, &tuples, budget.available(), &settings, &params))
            .collect();
        destinations.sort_by(|a, b| {
            b.in_use
                .cmp(&a.in_use)
                .then_with(|| (&a.addr, a.port).cmp(&(&b.addr, b.port)))
        });
        let verdict = verdict(&destinations, &settings, params.time_wait_s);

        let mut inbound: Vec<Inbound> = census
            .inbound
            .iter()
            .map(|(&port, counts)| Inbound {
                port,
                time_wait: counts.get(TcpState::TimeWait),
                established: counts.get(TcpState::Established),
                total: counts.total(),
            })
            .collect();
        inbound.sort_by(|a, b| {
            b.time_wait
                .cmp(&a.time_wait)
                .then(b.total.cmp(&a.total))
                .then(a.port.cmp(&b.port))
        });

        Status {
            host,
            netns,
            kernel,
            states: census.states,
            ephemeral: Ephemeral {
                low: settings.port_range_low,
                high: settings.port_range_high,
                size: budget.range_size,
                reserved: budget.reserved,
                listeners_in_range,
                available: budget.available(),
            },
            settings,
            counters,
            conntrack,
            window_s: params.window_s,
            thresholds: params.thresholds,
            time_wait_lifetime: TimeWaitHold {
                hz: time_wait.hz,
                granularity_s: time_wait.granularity_s,
                mean_s: time_wait.mean_s(),
                max_s: time_wait.max_s(),
                past_nominal_expiry: census.time_wait_past_nominal,
            },
            destinations,
            inbound,
            listeners: census
                .listeners
                .sockets
                .iter()
                .map(|(addr, port)| Listener {
                    addr: addr.to_string(),
                    port: *port,
                })
                .collect(),
            verdict,
            dump,
            process_scan: None,
            trace: None,
        }
    }
}

/// Shows a destination as `addr:port`, bracketing IPv6 like `ss` does.
pub fn endpoint(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockdiag::{Family, SocketRecord};

    fn settings(tw_reuse: u8) -> Settings {
        Settings {
            port_range_low: 32768,
            port_range_high: 60999,
            reserved_ports: kernel::PortRanges::parse("40000-40099").unwrap(),
            tcp_tw_reuse: tw_reuse,
            tcp_tw_reuse_delay_ms: Some(1000),
            tcp_timestamps: 1,
            tcp_max_tw_buckets: 262_144,
            tcp_fin_timeout: 60,
            tcp_tw_recycle: None,
        }
    }

    fn tw(census: &mut Census, src: &str, sport: u16, dst: &str, dport: u16, expires_ms: u32) {
        let local_addr: IpAddr = src.parse().unwrap();
        census.add(&SocketRecord {
            family: if local_addr.is_ipv4() {
                Family::Inet
            } else {
                Family::Inet6
            },
            state: TcpState::TimeWait,
            local_addr,
            local_port: sport,
            remote_addr: dst.parse().unwrap(),
            remote_port: dport,
            timer: 3,
            expires_ms,
            uid: 0,
            inode: 0,
        });
    }

    fn build(census: &Census, settings: Settings, options: &StatusOptions) -> Status {
        Status::build(
            Readings {
                census: census.clone(),
                settings,
                counters: Counters::default(),
                conntrack: None,
                host: "test".into(),
                kernel: "6.18".into(),
                netns: NetnsInfo {
                    name: "host".into(),
                    inode: 1,
                },
                dump: DumpInfo {
                    sockets: census.sockets,
                    duration_ms: 0.0,
                },
                // HZ=250: TIME_WAIT holds a port 61.024 s on average.
                time_wait: TimeWaitLifetime::for_hz(250),
            },
            options,
        )
    }

    /// 24,000 TIME_WAIT to one destination at ~400/s, a trickle to another,
    /// a listener inside the range.
    fn busy_census() -> Census {
        let mut census = Census::default();
        census.add(&SocketRecord {
            family: Family::Inet,
            state: TcpState::Listen,
            local_addr: "0.0.0.0".parse().unwrap(),
            local_port: 50_000,
            remote_addr: "0.0.0.0".parse().unwrap(),
            remote_port: 0,
            timer: 0,
            expires_ms: 0,
            uid: 0,
            inode: 1,
        });
        for i in 0..24_000u32 {
            // Evenly spread over the last minute: 400 per second of age.
            let expires = 60_000 - (i / 400) * 1000 - 500;
            tw(
                &mut census,
                "198.18.0.1",
                32768 + (i % 17_000) as u16,
                "198.18.0.100",
                5432,
                expires,
            );
        }
        for i in 0..30u16 {
            tw(&mut census, "2001:2::1", 33000 + i, "2001:2::100", 443, 30_000);
        }
        census
    }

    #[test]
    fn budget_rows_and_verdict_of_a_busy_host() {
        let status = build(&busy_census(), settings(0), &StatusOptions::default());
        assert_eq!(status.ephemeral.size, 28_232);
        assert_eq!(status.ephemeral.reserved, 100);
        assert_eq!(status.ephemeral.listeners_in_range, vec![50_000]);
        assert_eq!(status.ephemeral.available, 28_131);
        assert_eq!(status.destinations.len(), 2);
        let db = &status.destinations[0];
        assert_eq!((db.addr.as_str(), db.port), ("198.18.0.100", 5432));
        assert_eq!((db.time_wait, db.in_use, db.available), (24_000, 24_000, 28_131));
        assert!((db.close_rate_per_s - 400.0).abs() < 1e-9);
        assert_eq!(db.severity, Severity::Critical); // 85%
        assert_eq!(db.exhaustion_eta_s, None); // 400/s × 61 s < 28,131
                                               // It levels off at 400/s × 61.024 s of 28,131 ports.
        assert!((db.steady_utilization - 400.0 * 61.024 / 28_131.0).abs() < 1e-9);
        assert_eq!(db.outlook, Outlook::LevelsOff(db.steady_utilization));
        assert_eq!(db.outlook.short(), "lvl 87%");
        let v6 = &status.destinations[1];
        assert_eq!((v6.addr.as_str(), v6.port, v6.in_use), ("2001:2::100", 443, 30));
        assert_eq!(status.verdict.severity, Severity::Critical);
        let summary = &status.verdict.summary;
        assert!(
            summary.starts_with("CRITICAL: 198.18.0.100:5432 uses 85% of its 28,131 ports"),
            "{summary}"
        );
        assert!(summary.contains("pool is bypassed"), "{summary}");
        assert!(summary.contains("tcp_tw_reuse=0"), "{summary}");
        assert!(summary.contains("levels off at 87% of the budget"), "{summary}");
        assert!(summary.contains("61.0 s on this kernel"), "{summary}");
    }

    #[test]
    fn with_tw_reuse_the_two_ratios_differ_and_utilization_is_what_blocks() {
        let status = build(&busy_census(), settings(1), &StatusOptions::default());
        let db = &status.destinations[0];
        // 24,000 TIME_WAIT hold a 4-tuple (85% of the budget in the table)…
        assert!((db.in_use_ratio - 24_000.0 / 28_131.0).abs() < 1e-12);
        // …but only the 400 younger than the 1 s reuse delay block a port.
        assert!((db.utilization - 400.0 / 28_131.0).abs() < 1e-12);
        assert!(status
            .verdict
            .summary
            .contains(&format!("uses {}%", (db.utilization * 100.0).round())));
        let json = serde_json::to_value(status.report(&Selection::ALL)).unwrap();
        assert_eq!(json["destinations"][0]["utilization"], db.utilization);
        assert_eq!(json["destinations"][0]["in_use_ratio"], db.in_use_ratio);
        assert!(json["destinations"][0].get("effective_utilization").is_none());
    }

    #[test]
    fn an_exhausted_destination_says_what_its_rate_measures() {
        // 1,000 ports, all TIME_WAIT, the youngest 100 of the last second.
        let mut census = Census::default();
        for i in 0..1000u32 {
            tw(
                &mut census,
                "198.18.0.1",
                40_000 + i as u16,
                "198.18.0.100",
                5432,
                59_500 - (i / 100) * 1000,
            );
        }
        let mut s = settings(0);
        s.port_range_low = 40_000;
        s.port_range_high = 40_999;
        s.reserved_ports = kernel::PortRanges::default();
        let status = build(&census, s, &StatusOptions::default());
        let db = &status.destinations[0];
        assert_eq!(db.outlook, Outlook::ExhaustedNow);
        let summary = &status.verdict.summary;
        assert!(
            summary.contains("connections that got a port; the application attempts more"),
            "{summary}"
        );
        assert!(summary.contains("ports exhausted now"), "{summary}");
    }

    #[test]
    fn tw_reuse_one_turns_the_same_host_ok() {
        let status = build(&busy_census(), settings(1), &StatusOptions::default());
        let db = &status.destinations[0];
        assert!(db.tw_reuse);
        assert_eq!(db.severity, Severity::Ok);
        assert_eq!(status.verdict.severity, Severity::Ok);
        // Loopback-only reuse does not help a non-loopback destination.
        let status = build(&busy_census(), settings(2), &StatusOptions::default());
        assert_eq!(status.verdict.severity, Severity::Critical);
        assert!(status.verdict.summary.contains("loopback only"));
    }

    #[test]
    fn top_dest_selection_and_thresholds() {
        let census = busy_census();
        let status = build(&census, settings(0), &StatusOptions::default());
        // Collection keeps everything; the selection is the view's.
        assert_eq!(status.destinations.len(), 2);
        let report = status.report(&Selection { top: 1, dest: None });
        assert_eq!((report.destinations.len(), report.destinations_total), (1, 2));
        let report = status.report(&Selection {
            top: 10,
            dest: Some("[2001:2::100]:443".parse().unwrap()),
        });
        assert_eq!((report.destinations.len(), report.destinations_total), (1, 1));
        assert_eq!(report.destinations[0].port, 443);
        assert_eq!(report.verdict.severity, Severity::Ok);
        assert_eq!(
            status.verdict.severity,
            Severity::Critical,
            "the namespace's own verdict is unchanged"
        );
        let options = StatusOptions {
            thresholds: Thresholds {
                warning: 0.9,
                critical: 0.95,
            },
            ..StatusOptions::default()
        };
        assert_eq!(build(&census, settings(0), &options).verdict.severity, Severity::Ok);
    }

    #[test]
    fn json_has_the_documented_shape() {
        let status = build(&busy_census(), settings(0), &StatusOptions::default());
        let json = serde_json::to_value(status.report(&Selection::ALL)).unwrap();
        for key in [
            "netns",
            "kernel",
            "states",
            "ephemeral",
            "settings",
            "destinations",
            "destinations_total",
            "inbound",
            "verdict",
            "time_wait_lifetime",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["states"].as_object().unwrap().len(), 11);
        for key in ["low", "high", "reserved", "available"] {
            assert!(json["ephemeral"][key].is_number(), "ephemeral.{key}");
        }
        for key in ["tcp_tw_reuse", "tcp_timestamps", "tcp_max_tw_buckets"] {
            assert!(json["settings"][key].is_number(), "settings.{key}");
        }
        let d = &json["destinations"][1];
        for key in [
            "addr",
            "port",
            "time_wait",
            "established",
            "in_use",
            "available",
            "utilization",
            "in_use_ratio",
            "close_rate_per_s",
            "max_rate_per_s",
            "exhaustion_eta_s",
            "steady_utilization",
            "severity",
        ] {
            assert!(d.get(key).is_some(), "destinations[].{key}");
        }
        assert_eq!(d["addr"], "2001:2::100"); // no brackets
        assert!(d["exhaustion_eta_s"].is_null());
        assert_eq!(json["verdict"]["severity"], "critical");
    }

    #[test]
    fn the_tail_sums_into_one_destination() {
        let mut census = busy_census();
        for i in 0..60u16 {
            tw(&mut census, "198.18.0.1", 34_000 + i, "198.18.0.3", 80, 50_000);
        }
        let status = build(&census, settings(0), &StatusOptions::default());
        let (top, rest) = status.busiest_and_rest(1);
        assert_eq!((top.len(), top[0].port), (1, 5432));
        let rest = rest.unwrap();
        assert_eq!((rest.destinations, rest.in_use, rest.time_wait), (2, 90, 90));
        assert_eq!(rest.available, 2 * 28_131);
        assert_eq!(
            rest.utilization,
            status.destinations[1]
                .utilization
                .max(status.destinations[2].utilization)
        );
        let rates: f64 = status.destinations[1..].iter().map(|d| d.close_rate_per_s).sum();
        assert_eq!(rest.close_rate_per_s, rates);
        assert!(status.busiest_and_rest(3).1.is_none());
    }

    #[test]
    fn dest_filters_parse() {
        let f: DestFilter = "198.18.0.2:5432".parse().unwrap();
        assert!(f.matches("198.18.0.2".parse().unwrap(), 5432));
        assert!(!f.matches("198.18.0.2".parse().unwrap(), 5433));
        let f: DestFilter = "2001:2::1".parse().unwrap();
        assert_eq!(f.port, None);
        let f: DestFilter = "[2001:2::1]".parse().unwrap();
        assert_eq!(f.port, None);
        assert!("db.internal:5432"
            .parse::<DestFilter>()
            .unwrap_err()
            .contains("ADDR:PORT"));
    }

    #[test]
    fn no_outbound_connections_is_ok() {
        let status = build(&Census::default(), settings(2), &StatusOptions::default());
        assert_eq!(status.verdict.severity, Severity::Ok);
        assert!(status.destinations.is_empty());
    }
}
