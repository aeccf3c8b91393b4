//! What-if planning: the TIME_WAIT post's arithmetic ("28,231 ports / 60 s = 470
//! connections/s", "1000 req/s × 3 calls × 60 s = 180,000 sockets") done with
//! the same model `twscope status` applies to live sockets ([`crate::capacity`]),
//! plus the smallest change that makes a workload sustainable.
//!
//! ```
//! use twscope_core::kernel::PortRanges;
//! use twscope_core::plan::Workload;
//!
//! // 500 new connections/s to one database, default range, no tw_reuse.
//! let plan = Workload::new(500.0, (32768, 60999), PortRanges::default()).plan();
//! assert_eq!(plan.ports_needed, 30_000);
//! assert_eq!(plan.ports_available, 28_232); // inclusive range
//! assert!(!plan.sustainable);
//! assert_eq!(plan.exhaustion_s.map(f64::round), Some(56.0)); // 28,232 / 500
//! ```

use serde::Serialize;

use crate::capacity::{exhaustion_eta, hold_seconds, max_sustainable_rate, PortBudget, Severity, Thresholds};
use crate::census::AGE_BUCKETS;
use crate::kernel::{PortRanges, DEFAULT_TW_REUSE_DELAY_MS};
use crate::text::thousands;

pub use crate::linux::WIDEST_PORT_RANGE as WIDEST_RANGE;

/// Highest rate `plan` accepts, connections/s: far beyond any real host (one
/// core churns some 15,000/s), and low enough that every product stays exact.
pub const MAX_RATE_PER_S: f64 = 100_000_000.0;
/// Longest TIME_WAIT `plan` accepts, seconds (Linux: 60, fixed).
pub const MAX_TIME_WAIT_S: f64 = 3600.0;
/// Shortest TIME_WAIT `plan` accepts, seconds: the 1 ms floor of the reuse delay.
pub const MIN_TIME_WAIT_S: f64 = 0.001;
/// Longest request latency `plan` accepts, ms (an hour).
pub const MAX_LATENCY_MS: f64 = 3_600_000.0;

/// A workload and the host it runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// New connections per second, all destinations together.
    pub rate_per_s: f64,
    /// Destinations the connections spread over evenly (each has its own budget).
    pub destinations: u32,
    /// Source addresses the client rotates over (each has its own budget).
    pub source_ips: u32,
    /// `ip_local_port_range`, inclusive.
    pub range: (u16, u16),
    /// `ip_local_reserved_ports`.
    pub reserved: PortRanges,
    /// Whether `tcp_tw_reuse` applies to these destinations.
    pub tw_reuse: bool,
    /// The TIME_WAIT reuse delay in ms (1000 unless Linux 6.14+'s
    /// `tcp_tw_reuse_delay` says otherwise): how long a port stays held when
    /// `tw_reuse` is on.
    pub reuse_delay_ms: u32,
    /// TIME_WAIT length: 60 s in Linux, fixed; other stacks differ.
    pub time_wait_s: f64,
    /// How long one request holds a connection, for sizing a pool.
    pub latency_ms: f64,
}

impl Workload {
    /// `rate_per_s` to one destination from one source address, without
    /// tw_reuse, 60 s TIME_WAIT, 50 ms requests.
    pub fn new(rate_per_s: f64, range: (u16, u16), reserved: PortRanges) -> Workload {
        Workload {
            rate_per_s,
            destinations: 1,
            source_ips: 1,
            range,
            reserved,
            tw_reuse: false,
            reuse_delay_ms: DEFAULT_TW_REUSE_DELAY_MS,
            time_wait_s: crate::capacity::TIME_WAIT_SECS,
            latency_ms: 50.0,
        }
    }

    /// Checks the inputs; the message says which one is wrong. Within these
    /// bounds every number [`Workload::plan`] computes is finite and exact.
    pub fn validate(&self) -> Result<(), String> {
        if !self.rate_per_s.is_finite() || self.rate_per_s < 0.0 {
            return Err(format!(
                "the rate must be a number of connections per second ≥ 0, not {}",
                self.rate_per_s
            ));
        }
        if self.rate_per_s > MAX_RATE_PER_S {
            return Err(format!(
                "a rate of {} connections/s is beyond any real host: give at most 100,000,000",
                shown(self.rate_per_s)
            ));
        }
        if self.destinations == 0 || self.source_ips == 0 {
            return Err("destinations and source addresses must be at least 1".to_string());
        }
        if self.range.0 > self.range.1 {
            return Err(format!(
                "port range {}-{} runs backwards: give LOW-HIGH",
                self.range.0, self.range.1
            ));
        }
        if !(self.time_wait_s > 0.0 && self.time_wait_s.is_finite()) {
            return Err("--time-wait must be a positive number of seconds".to_string());
        }
        if !(MIN_TIME_WAIT_S..=MAX_TIME_WAIT_S).contains(&self.time_wait_s) {
            return Err(format!(
                "--time-wait {} is out of range: give 0.001 to 3600 seconds (Linux's is 60)",
                shown(self.time_wait_s)
            ));
        }
        if !(self.latency_ms >= 0.0 && self.latency_ms.is_finite()) {
            return Err("--latency-ms must be a number of milliseconds ≥ 0".to_string());
        }
        if self.latency_ms > MAX_LATENCY_MS {
            return Err(format!(
                "--latency-ms {} is out of range: give at most 3,600,000 (an hour)",
                shown(self.latency_ms)
            ));
        }
        Ok(())
    }

    fn budget(&self, range: (u16, u16)) -> PortBudget {
        PortBudget {
            range_size: u32::from(range.1 - range.0) + 1,
            reserved: self.reserved.count_within(range.0, range.1),
            listeners: 0,
        }
    }

    fn hold_s(&self, tw_reuse: bool) -> f64 {
        hold_seconds(tw_reuse, self.reuse_delay_ms, self.time_wait_s)
    }

    /// Runs the model.
    pub fn plan(&self) -> Plan {
        let rate_per_destination = self.rate_per_s / f64::from(self.destinations);
        let rate_per_source = rate_per_destination / f64::from(self.source_ips);
        let hold_s = self.hold_s(self.tw_reuse);
        let ports_per_source = self.budget(self.range).available();
        let ports_available = u64::from(ports_per_source) * u64::from(self.source_ips);
        let ports_needed = ports_needed(rate_per_destination, hold_s);
        // From empty: one source's budget against its share of the rate, with
        // the same forecast `status` runs on live sockets.
        let exhaustion_s = exhaustion_eta(&[0; AGE_BUCKETS], 0, ports_per_source, rate_per_source, hold_s);
        let sustainable = ports_needed <= ports_available && exhaustion_s.is_none();
        let utilization = if ports_available == 0 {
            1.0
        } else {
            ports_needed as f64 / ports_available as f64
        };
        let severity = if sustainable {
            Thresholds::default().classify(utilization)
        } else {
            Severity::Critical
        };
        let max_rate = max_sustainable_rate(ports_per_source, hold_s) * f64::from(self.source_ips);
        // `as` saturates (and maps NaN to 0): no wrap even for unvalidated input.
        let pool_size = ((rate_per_destination * self.latency_ms / 1000.0).ceil() as u64).max(1);
        let headroom = i64::try_from(ports_available)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(ports_needed).unwrap_or(i64::MAX));
        Plan {
            rate_per_s: self.rate_per_s,
            rate_per_destination_per_s: rate_per_destination,
            hold_s,
            ports_needed,
            sockets_needed_total: ports_needed.saturating_mul(u64::from(self.destinations)),
            ports_per_source,
            ports_available,
            max_rate_per_s: max_rate,
            max_total_rate_per_s: max_rate * f64::from(self.destinations),
            headroom,
            utilization,
            sustainable,
            exhaustion_s,
            severity,
            pool_size,
            remedies: if sustainable {
                Vec::new()
            } else {
                self.remedies(ports_needed, pool_size)
            },
        }
    }

    /// The smallest change of each kind that makes the workload sustainable,
    /// application fixes first (as the TIME_WAIT checklist orders them).
    fn remedies(&self, ports_needed: u64, pool_size: u64) -> Vec<Remedy> {
        let per_source = u64::from(self.budget(self.range).available());
        let mut remedies = vec![Remedy {
            kind: RemedyKind::Pool,
            sufficient: pool_size <= per_source.saturating_mul(u64::from(self.source_ips)),
            change: format!("reuse connections: a pool of {pool_size} per destination"),
            detail: format!(
                "Little's law: {:.0} requests/s × {} ms each = {pool_size} connections busy at once; a pool that \
                 keeps them open opens no new connections, so it needs {pool_size} ports instead of {}",
                self.rate_per_s / f64::from(self.destinations),
                self.latency_ms,
                thousands(ports_needed)
            ),
        }];
        if per_source > 0 {
            let needed = ports_needed.div_ceil(per_source);
            remedies.push(Remedy {
                kind: RemedyKind::SourceIps,
                sufficient: needed <= 256,
                change: format!("use {needed} source addresses (now {})", self.source_ips),
                detail: format!(
                    "each source address has its own {} ports per destination; bind each connection to one of \
                     them in turn (IP_BIND_ADDRESS_NO_PORT so the port is still chosen by connect())",
                    thousands(per_source)
                ),
            });
        }
        let widest = self.budget(WIDEST_RANGE).available();
        let sources = u64::from(self.source_ips);
        let enough = |low: u16| {
            u64::from(self.budget((low, WIDEST_RANGE.1)).available()).saturating_mul(sources) >= ports_needed
        };
        let range = if !enough(WIDEST_RANGE.0) {
            None
        } else {
            // The narrowest range ending at 65535 that holds enough ports: the
            // highest `low` that is enough. Ports only grow as `low` falls, so
            // bisect (16 steps, not one per port).
            let (mut enough_low, mut short_low) = (WIDEST_RANGE.0, u32::from(WIDEST_RANGE.1) + 1);
            while u32::from(enough_low) + 1 < short_low {
                let mid = ((u32::from(enough_low) + short_low) / 2) as u16;
                if enough(mid) {
                    enough_low = mid;
                } else {
                    short_low = u32::from(mid);
                }
            }
            Some(enough_low.min(self.range.0))
        };
        remedies.push(match range {
            Some(low) => Remedy {
                kind: RemedyKind::PortRange,
                sufficient: true,
                change: format!("net.ipv4.ip_local_port_range = {low} 65535"),
                detail: format!(
                    "{} ports per source address; keep listeners out of it (ip_local_reserved_ports)",
                    thousands(u64::from(self.budget((low, 65535)).available()))
                ),
            },
            None => Remedy {
                kind: RemedyKind::PortRange,
                sufficient: false,
                change: "net.ipv4.ip_local_port_range = 1024 65535".to_string(),
                detail: format!(
                    "even the widest range ({} ports) is short of {}",
                    thousands(u64::from(widest)),
                    thousands(ports_needed)
                ),
            },
        });
        if !self.tw_reuse {
            let reuse = Workload {
                tw_reuse: true,
                ..self.clone()
            }
            .plan();
            remedies.push(Remedy {
                kind: RemedyKind::TwReuse,
                sufficient: reuse.sustainable,
                change: "net.ipv4.tcp_tw_reuse = 1 (with net.ipv4.tcp_timestamps = 1)".to_string(),
                detail: format!(
                    "connect() may take over a TIME_WAIT port after {} ms instead of {} s: {} ports needed; \
                     client side only, and it needs tcp_timestamps",
                    thousands(u64::from(self.reuse_delay_ms)),
                    self.time_wait_s,
                    thousands(reuse.ports_needed)
                ),
            });
        }
        remedies
    }
}

/// A number as given, but `1e300` rather than its 301 digits.
fn shown(x: f64) -> String {
    if x.abs() >= 1e9 || (x != 0.0 && x.abs() < 1e-4) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// Sockets a rate keeps in the table at steady state.
fn ports_needed(rate_per_s: f64, hold_s: f64) -> u64 {
    // Round away float noise before ceil: 500 × 60 must be 30,000, not 30,001.
    ((rate_per_s * hold_s * 1e6).round() / 1e6).ceil() as u64
}

/// The kinds of change `plan` proposes for a workload that is not
/// sustainable; in JSON, `pool`, `source_ips`, `port_range` and `tw_reuse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemedyKind {
    /// Keep connections open in a pool sized by Little's law (rate ×
    /// latency), so requests stop opening (and closing) connections.
    Pool,
    /// Spread connections over more source addresses: each one has its own
    /// budget of ports per destination.
    SourceIps,
    /// Widen `ip_local_port_range` (up to 1024–65535).
    PortRange,
    /// Turn on `tcp_tw_reuse` (with `tcp_timestamps`), so a closed port is held
    /// for the reuse delay instead of the whole TIME_WAIT.
    TwReuse,
}

/// One change and whether it alone is enough.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Remedy {
    /// Which kind of change this is.
    pub kind: RemedyKind,
    /// Whether this change alone makes the workload sustainable.
    pub sufficient: bool,
    /// The change as a user makes it, e.g. `net.ipv4.ip_local_port_range =
    /// 15000 65535` or "use 2 source addresses (now 1)".
    pub change: String,
    /// Why it helps, with the numbers behind it and any condition it needs.
    pub detail: String,
}

/// The model's answer for a workload. Port counts are per destination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// New connections per second, all destinations together, as given.
    pub rate_per_s: f64,
    /// The rate each destination's budget carries: `rate_per_s` ÷
    /// destinations, connections/s.
    pub rate_per_destination_per_s: f64,
    /// How long a closed connection holds its port, in seconds: the TIME_WAIT
    /// length, or the reuse delay with tw_reuse.
    pub hold_s: f64,
    /// Ports one destination needs at steady state: its rate × the hold time.
    pub ports_needed: u64,
    /// Client sockets all destinations keep in the table together.
    pub sockets_needed_total: u64,
    /// Ports one source address has towards one destination: the range minus
    /// the reserved ports inside it.
    pub ports_per_source: u32,
    /// Ports one destination has: per source address × source addresses.
    pub ports_available: u64,
    /// Highest sustainable rate to one destination.
    pub max_rate_per_s: f64,
    /// … and to all destinations together.
    pub max_total_rate_per_s: f64,
    /// ports_available − ports_needed (negative = short).
    pub headroom: i64,
    /// `ports_needed` ÷ `ports_available` at steady state (1.0 when no port is
    /// available); above 1 the destination runs out.
    pub utilization: f64,
    /// Whether the ports last: `ports_needed` ≤ `ports_available` and the
    /// forecast from an empty table never reaches exhaustion.
    pub sustainable: bool,
    /// Seconds from empty to the first EADDRNOTAVAIL; null when sustainable.
    pub exhaustion_s: Option<f64>,
    /// Critical when not sustainable; otherwise the default thresholds (50 %
    /// warning, 80 % critical) applied to `utilization`.
    pub severity: Severity,
    /// Connections a pool needs to carry the rate (Little's law).
    pub pool_size: u64,
    /// Empty when sustainable.
    pub remedies: Vec<Remedy>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_range(rate: f64) -> Workload {
        Workload::new(rate, (32768, 60999), PortRanges::default())
    }

    #[test]
    fn the_posts_numbers() {
        // "Max new connections/sec: 28,231 / 60 = 470/sec per destination" —
        // the inclusive range really holds 28,232, so 470.5.
        let plan = default_range(470.0).plan();
        assert_eq!(plan.ports_available, 28_232);
        assert!((plan.max_rate_per_s - 470.53).abs() < 0.01);
        assert!(plan.sustainable);
        assert_eq!(plan.exhaustion_s, None);
        // "500 × 60 = 30,000 sockets needed … 30,000 > 28,231 → EXHAUSTION"
        let plan = default_range(500.0).plan();
        assert_eq!((plan.ports_needed, plan.headroom), (30_000, -1_768));
        assert!(!plan.sustainable);
        assert_eq!(plan.severity, Severity::Critical);
        assert!((plan.exhaustion_s.unwrap() - 28_232.0 / 500.0).abs() < 1e-9);
        // "1000 req/sec × 3 outbound calls … 3000 × 60 = 180,000 sockets needed!"
        let plan = default_range(3000.0).plan();
        assert_eq!(plan.ports_needed, 180_000);
        // "10 unique destinations: Max total: 4,700 new connections/sec"
        let plan = Workload {
            destinations: 10,
            ..default_range(3000.0)
        }
        .plan();
        assert!((plan.max_total_rate_per_s - 4_705.3).abs() < 0.1);
        assert_eq!(plan.sockets_needed_total, 180_000);
        assert_eq!(plan.ports_needed, 18_000);
        assert!(plan.sustainable);
    }

    #[test]
    fn the_labs_prediction() {
        // 50/s into 1,000 ports: full after 20 s.
        let plan = Workload::new(50.0, (40000, 40999), PortRanges::default()).plan();
        assert_eq!((plan.ports_needed, plan.ports_available), (3_000, 1_000));
        assert_eq!(plan.exhaustion_s, Some(20.0));
        // Two source addresses: each gets half the rate, so twice as late.
        let plan = Workload {
            source_ips: 2,
            ..Workload::new(50.0, (40000, 40999), PortRanges::default())
        }
        .plan();
        assert_eq!(plan.ports_available, 2_000);
        assert_eq!(plan.exhaustion_s, Some(40.0));
        // tw_reuse: a port is held for 1 s, so 50 ports are enough.
        let plan = Workload {
            tw_reuse: true,
            ..Workload::new(50.0, (40000, 40999), PortRanges::default())
        }
        .plan();
        assert_eq!(plan.ports_needed, 50);
        assert!(plan.sustainable);
        assert_eq!(plan.max_rate_per_s, 1000.0);
    }

    #[test]
    fn reserved_ports_shrink_the_budget() {
        let reserved = PortRanges::parse("30000-32999,40000-40099").unwrap();
        let plan = Workload::new(400.0, (32768, 60999), reserved).plan();
        // 232 + 100 of the reserved ports fall inside the range.
        assert_eq!(plan.ports_available, 28_232 - 332);
        assert!((plan.max_rate_per_s - 27_900.0 / 60.0).abs() < 1e-9);
    }

    #[test]
    fn remedies_name_the_smallest_sufficient_change() {
        let plan = default_range(1000.0).plan();
        assert_eq!(plan.ports_needed, 60_000);
        let by_kind = |kind| plan.remedies.iter().find(|r| r.kind == kind).unwrap();
        // Little's law at 50 ms: 50 connections.
        assert_eq!(plan.pool_size, 50);
        assert!(by_kind(RemedyKind::Pool).sufficient);
        let sources = by_kind(RemedyKind::SourceIps);
        assert!(
            sources.change.starts_with("use 3 source addresses"),
            "{}",
            sources.change
        );
        // 60,000 ports: 5536–65535 exactly.
        let range = by_kind(RemedyKind::PortRange);
        assert_eq!(range.change, "net.ipv4.ip_local_port_range = 5536 65535");
        assert!(range.sufficient);
        assert!(by_kind(RemedyKind::TwReuse).sufficient);
        // Beyond any range: 2,000/s needs 120,000 ports.
        let plan = default_range(2000.0).plan();
        let range = plan.remedies.iter().find(|r| r.kind == RemedyKind::PortRange).unwrap();
        assert!(!range.sufficient);
        // A sustainable workload needs no remedy.
        assert!(default_range(100.0).plan().remedies.is_empty());
    }

    /// The range remedy as it was first written: one step per port.
    fn narrowest_low_stepwise(w: &Workload, ports_needed: u64) -> Option<u16> {
        let sources = u64::from(w.source_ips);
        if u64::from(w.budget(WIDEST_RANGE).available()) * sources < ports_needed {
            return None;
        }
        let mut low = WIDEST_RANGE.1;
        while u64::from(w.budget((low, WIDEST_RANGE.1)).available()) * sources < ports_needed {
            low -= 1;
        }
        Some(low.min(w.range.0))
    }

    #[test]
    fn the_range_remedy_bisects_to_the_same_answer() {
        let reserved = PortRanges::parse("1024-2000,30000-32999,40000-40099,50000,60000-61000,65535").unwrap();
        for (rate, sources, reserved) in [
            (1000.0, 1, PortRanges::default()),
            (1000.0, 1, reserved.clone()),
            (900.0, 2, reserved.clone()),
            (5000.0, 7, reserved.clone()),
            (1050.0, 1, reserved.clone()),
            (1070.0, 1, PortRanges::default()),
            (0.02, 1, PortRanges::default()),
            (1e6, 1, PortRanges::default()),
        ] {
            let w = Workload {
                source_ips: sources,
                ..Workload::new(rate, (32768, 60999), reserved)
            };
            let plan = w.plan();
            let Some(range) = plan.remedies.iter().find(|r| r.kind == RemedyKind::PortRange) else {
                assert!(plan.sustainable);
                continue;
            };
            let expected = match narrowest_low_stepwise(&w, plan.ports_needed) {
                Some(low) => format!("net.ipv4.ip_local_port_range = {low} 65535"),
                None => "net.ipv4.ip_local_port_range = 1024 65535".to_string(),
            };
            assert_eq!(range.change, expected, "rate {rate} sources {sources}");
        }
        // Every needed count from 0 to beyond the widest range, reserved ports or not.
        for reserved in [PortRanges::default(), reserved] {
            let w = Workload {
                source_ips: 1,
                ..Workload::new(1.0, (32768, 60999), reserved)
            };
            for needed in (0..70_000u64).step_by(97) {
                let bisected = {
                    let plan_range = w
                        .remedies(needed, 1)
                        .into_iter()
                        .find(|r| r.kind == RemedyKind::PortRange)
                        .unwrap();
                    plan_range.sufficient.then(|| {
                        plan_range
                            .change
                            .trim_start_matches("net.ipv4.ip_local_port_range = ")
                            .split(' ')
                            .next()
                            .unwrap()
                            .parse::<u16>()
                            .unwrap()
                    })
                };
                assert_eq!(bisected, narrowest_low_stepwise(&w, needed), "needed {needed}");
            }
        }
    }

    #[test]
    fn absurd_inputs_are_refused_and_unvalidated_ones_do_not_wrap() {
        for (w, mentions) in [
            (default_range(1e18), "100,000,000"),
            (default_range(1e300), "100,000,000"),
            (default_range(f64::INFINITY), "rate"),
            (
                Workload {
                    time_wait_s: 1e12,
                    ..default_range(1.0)
                },
                "--time-wait",
            ),
            (
                Workload {
                    time_wait_s: 3600.5,
                    ..default_range(1.0)
                },
                "--time-wait",
            ),
            (
                Workload {
                    time_wait_s: 1e-9,
                    ..default_range(1.0)
                },
                "--time-wait",
            ),
            (
                Workload {
                    latency_ms: 3_600_001.0,
                    ..default_range(1.0)
                },
                "--latency-ms",
            ),
        ] {
            let message = w.validate().unwrap_err();
            assert!(message.contains(mentions), "{message:?} should mention {mentions:?}");
            assert_eq!(message.lines().count(), 1, "{message:?}");
            assert!(message.len() < 120, "short enough to read: {message:?}");
        }
        // The limits themselves are accepted.
        let w = Workload {
            destinations: 1,
            time_wait_s: MAX_TIME_WAIT_S,
            latency_ms: MAX_LATENCY_MS,
            ..default_range(MAX_RATE_PER_S)
        };
        w.validate().unwrap();
        let plan = w.plan();
        assert_eq!(plan.ports_needed, 360_000_000_000);
        assert_eq!(plan.headroom, 28_232 - 360_000_000_000);
        assert_eq!(plan.pool_size, 360_000_000_000);
        // Unvalidated input (the library does not force validate): no overflow
        // panic, saturated instead of wrapped.
        let plan = Workload {
            destinations: 2,
            ..default_range(1e18)
        }
        .plan();
        assert_eq!(plan.sockets_needed_total, u64::MAX);
        assert!(plan.headroom < 0);
        assert!(!plan.sustainable);
        let plan = Workload {
            destinations: u32::MAX,
            source_ips: u32::MAX,
            ..default_range(1e300)
        }
        .plan();
        assert!(plan.headroom < 0 && !plan.sustainable);
    }

    #[test]
    fn bad_inputs_are_refused_with_a_reason() {
        assert!(default_range(-1.0).validate().unwrap_err().contains("rate"));
        assert!(Workload {
            range: (5000, 4000),
            ..default_range(1.0)
        }
        .validate()
        .unwrap_err()
        .contains("backwards"));
        assert!(Workload {
            destinations: 0,
            ..default_range(1.0)
        }
        .validate()
        .is_err());
        assert!(default_range(f64::NAN).validate().is_err());
        assert!(default_range(0.0).plan().sustainable);
    }
}
