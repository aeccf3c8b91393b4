//! The `twscope status` report: census + settings + capacity model, ready to
//! render as text or JSON. Its serialised form is the documented JSON schema.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use serde::Serialize;

use crate::capacity::{self, Assessment, ModelParams, PortBudget, Severity, Thresholds};
use crate::census::{Census, StateCounts, TupleKey, TupleStats};
use crate::kernel::{self, Conntrack, Counters, ReadError, Settings};
use crate::netns::NetnsInfo;
use crate::sockdiag::{DumpError, TcpState};
use crate::text::{rate, thousands};

/// What to compute and show.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusOptions {
    /// Close-rate window in seconds (1–60).
    pub window_s: u32,
    pub thresholds: Thresholds,
    /// Destinations to list; 0 = all.
    pub top: usize,
    /// Only destinations matching this.
    pub dest: Option<DestFilter>,
}

impl Default for StatusOptions {
    fn default() -> StatusOptions {
        StatusOptions {
            window_s: 10,
            thresholds: Thresholds::default(),
            top: 10,
            dest: None,
        }
    }
}

/// `--dest ADDR[:PORT]`: `198.18.0.2`, `198.18.0.2:5432`, `2001:2::1`, `[2001:2::1]:443`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestFilter {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

impl FromStr for DestFilter {
    type Err = String;

    fn from_str(text: &str) -> Result<DestFilter, String> {
        if let Ok(sa) = text.parse::<SocketAddr>() {
            return Ok(DestFilter { addr: sa.ip().to_canonical(), port: Some(sa.port()) });
        }
        let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
        match bare.parse::<IpAddr>() {
            Ok(addr) => Ok(DestFilter { addr: addr.to_canonical(), port: None }),
            Err(_) => Err(format!(
                "{text:?} is not ADDR or ADDR:PORT (e.g. 198.18.0.2:5432, [2001:db8::1]:443)"
            )),
        }
    }
}

impl DestFilter {
    pub fn matches(&self, addr: IpAddr, port: u16) -> bool {
        self.addr == addr && self.port.is_none_or(|p| p == port)
    }
}

/// Why a status could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Dump(#[from] DumpError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The ephemeral port range and what is left of it for `connect()`.
#[derive(Debug, Clone, Serialize)]
pub struct Ephemeral {
    pub low: u16,
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
    pub addr: String,
    pub in_use: u64,
    pub time_wait: u64,
    pub utilization: f64,
}

/// Outbound connections to one destination (address, port).
#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    /// Address without brackets.
    pub addr: String,
    pub port: u16,
    pub time_wait: u64,
    pub established: u64,
    pub in_use: u64,
    /// Ports available towards it: the per-source budget × source addresses.
    pub available: u32,
    /// The busiest source address's in use / available: a source is out of
    /// ports when its own budget is gone. Equal to in_use / available with
    /// one source address, the usual case.
    pub utilization: f64,
    /// Whether tcp_tw_reuse applies (TIME_WAIT older than the reuse delay
    /// does not block a port).
    pub tw_reuse: bool,
    /// What the severity is judged on: blocking sockets / available.
    pub effective_utilization: f64,
    pub close_rate_per_s: f64,
    pub max_rate_per_s: f64,
    /// Seconds until the busiest source runs out at the current rate; null
    /// when not on course to.
    pub exhaustion_eta_s: Option<f64>,
    pub severity: Severity,
    pub states: StateCounts,
    pub sources: Vec<SourceUse>,
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    /// Bound address without brackets (`0.0.0.0`, `::` for any).
    pub addr: String,
    pub port: u16,
}

/// Server-side sockets on one listening port.
#[derive(Debug, Clone, Serialize)]
pub struct Inbound {
    pub port: u16,
    pub time_wait: u64,
    pub established: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub severity: Severity,
    /// One line naming the worst destination and the likely cause.
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DumpInfo {
    pub sockets: u64,
    pub duration_ms: f64,
}

/// The whole report. Serialises to the JSON schema documented in the README.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub host: String,
    pub netns: NetnsInfo,
    pub kernel: String,
    pub states: StateCounts,
    pub ephemeral: Ephemeral,
    pub settings: Settings,
    pub counters: Counters,
    pub conntrack: Option<Conntrack>,
    pub window_s: u32,
    pub thresholds: Thresholds,
    /// Outbound destinations matching `--dest`, before the `--top` cut.
    pub destinations_total: usize,
    /// Sorted by in-use, descending; the first `--top` (all with 0).
    pub destinations: Vec<Destination>,
    pub inbound: Vec<Inbound>,
    /// Every listening socket, by port.
    pub listeners: Vec<Listener>,
    pub verdict: Verdict,
    pub dump: DumpInfo,
}

impl Status {
    /// Reads the calling thread's network namespace (enter it first) and
    /// builds the report.
    pub fn collect(options: &StatusOptions, netns: NetnsInfo) -> Result<Status, StatusError> {
        let proc_root = Path::new("/proc");
        let settings = Settings::read(proc_root)?;
        let started = Instant::now();
        let census = Census::collect()?;
        let dump = DumpInfo {
            sockets: census.sockets,
            duration_ms: (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        };
        Ok(Status::build(
            &census,
            settings,
            // /proc/net follows the main thread; /proc/thread-self/net follows
            // this one, which is what a caller that entered a namespace on a
            // worker thread (`twscope lab`) needs. Same thing on the main thread.
            Counters::read(Path::new("/proc/thread-self"))?,
            Conntrack::read(proc_root)?,
            kernel::hostname(proc_root)?,
            kernel::kernel_release(proc_root)?,
            netns,
            dump,
            options,
        ))
    }

    /// Builds the report from already gathered parts (no I/O).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        census: &Census,
        settings: Settings,
        counters: Counters,
        conntrack: Option<Conntrack>,
        host: String,
        kernel: String,
        netns: NetnsInfo,
        dump: DumpInfo,
        options: &StatusOptions,
    ) -> Status {
        let listeners_in_range: Vec<u16> = census
            .listeners
            .ports()
            .filter(|&p| settings.in_range(p) && !settings.reserved_ports.contains(p))
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
        };

        // Group tuples by destination; assess each tuple on its own budget.
        let mut by_destination: BTreeMap<(IpAddr, u16), Vec<(&TupleKey, &TupleStats)>> = BTreeMap::new();
        for (key, stats) in &census.outbound {
            if options.dest.is_some_and(|f| !f.matches(key.dst, key.dst_port)) {
                continue;
            }
            by_destination.entry((key.dst, key.dst_port)).or_default().push((key, stats));
        }
        let mut destinations: Vec<Destination> = by_destination
            .into_iter()
            .map(|((addr, port), tuples)| destination(addr, port, &tuples, budget.available(), &settings, &params))
            .collect();
        destinations.sort_by(|a, b| {
            b.in_use.cmp(&a.in_use).then_with(|| (&a.addr, a.port).cmp(&(&b.addr, b.port)))
        });
        let verdict = verdict(&destinations, &settings);
        let destinations_total = destinations.len();
        if options.top > 0 {
            destinations.truncate(options.top);
        }

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
        inbound.sort_by(|a, b| b.time_wait.cmp(&a.time_wait).then(b.total.cmp(&a.total)).then(a.port.cmp(&b.port)));

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
            destinations_total,
            destinations,
            inbound,
            listeners: census
                .listeners
                .sockets
                .iter()
                .map(|(addr, port)| Listener { addr: addr.to_string(), port: *port })
                .collect(),
            verdict,
            dump,
        }
    }
}

fn destination(
    addr: IpAddr,
    port: u16,
    tuples: &[(&TupleKey, &TupleStats)],
    per_source: u32,
    settings: &Settings,
    params: &ModelParams,
) -> Destination {
    let mut states = StateCounts::default();
    let mut sources = Vec::with_capacity(tuples.len());
    let mut worst: Option<Assessment> = None;
    let mut close_rate = 0.0;
    let mut max_rate = 0.0;
    let mut eta: Option<f64> = None;
    for (key, stats) in tuples {
        for (state, n) in stats.states.iter() {
            states.add(state, n);
        }
        let a = capacity::assess(stats, per_source, settings.tw_reuse_applies(key.src, key.dst), params);
        close_rate += a.close_rate_per_s;
        max_rate += a.max_rate_per_s;
        if let Some(t) = a.exhaustion_eta_s {
            eta = Some(eta.map_or(t, |e| e.min(t)));
        }
        sources.push(SourceUse {
            addr: key.src.to_string(),
            in_use: a.in_use,
            time_wait: a.time_wait,
            utilization: a.utilization,
        });
        let worse = match &worst {
            None => true,
            Some(w) => (a.severity, a.effective_utilization) > (w.severity, w.effective_utilization),
        };
        if worse {
            worst = Some(a);
        }
    }
    sources.sort_by(|a, b| b.in_use.cmp(&a.in_use).then_with(|| a.addr.cmp(&b.addr)));
    let worst = worst.expect("a destination has at least one tuple");
    Destination {
        addr: addr.to_string(),
        port,
        time_wait: states.get(TcpState::TimeWait),
        established: states.get(TcpState::Established),
        in_use: states.total(),
        available: per_source.saturating_mul(tuples.len() as u32),
        utilization: sources.iter().map(|s| s.utilization).fold(0.0, f64::max),
        tw_reuse: worst.tw_reuse,
        effective_utilization: worst.effective_utilization,
        close_rate_per_s: close_rate,
        max_rate_per_s: max_rate,
        exhaustion_eta_s: eta,
        severity: worst.severity,
        states,
        sources,
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

fn verdict(destinations: &[Destination], settings: &Settings) -> Verdict {
    let Some(worst) = destinations.iter().max_by(|a, b| {
        (a.severity, a.effective_utilization)
            .partial_cmp(&(b.severity, b.effective_utilization))
            .unwrap_or(std::cmp::Ordering::Equal)
    }) else {
        return Verdict {
            severity: Severity::Ok,
            summary: "OK: no outbound TCP connections, so no source ports in use".to_string(),
        };
    };
    let name = endpoint(&worst.addr, worst.port);
    let percent = (worst.effective_utilization * 100.0).round();
    let usage = format!(
        "{name} uses {percent}% of its {} ports ({} in use, {} TIME_WAIT), closing {}/s against {}/s sustainable",
        thousands(u64::from(worst.available)),
        thousands(worst.in_use),
        thousands(worst.time_wait),
        rate(worst.close_rate_per_s),
        rate(worst.max_rate_per_s),
    );
    if worst.severity == Severity::Ok {
        return Verdict {
            severity: Severity::Ok,
            summary: format!("OK: no destination is short of source ports; busiest {usage}"),
        };
    }
    let eta = match worst.exhaustion_eta_s {
        Some(s) if s <= 0.0 => "; ports exhausted now: connect() fails with EADDRNOTAVAIL".to_string(),
        Some(s) => format!("; exhausted in {s:.0} s at this rate"),
        None => String::new(),
    };
    Verdict {
        severity: worst.severity,
        summary: format!(
            "{}: {usage}{eta}. Likely cause: {}",
            worst.severity.name().to_uppercase(),
            likely_cause(worst, settings)
        ),
    }
}

fn likely_cause(d: &Destination, settings: &Settings) -> String {
    let close_wait = d.states.get(TcpState::CloseWait);
    let syn_sent = d.states.get(TcpState::SynSent);
    let cause = if d.time_wait * 2 >= d.in_use {
        format!(
            "short-lived connections ({} TIME_WAIT vs {} ESTABLISHED): each request opens and closes its own \
             connection, so a connection pool is bypassed or HTTP keep-alive is off; reuse connections",
            thousands(d.time_wait),
            thousands(d.established)
        )
    } else if close_wait * 2 >= d.in_use {
        format!(
            "{} sockets in CLOSE_WAIT: the peer closed but the application never calls close() (a socket leak)",
            thousands(close_wait)
        )
    } else if syn_sent * 2 >= d.in_use {
        format!("{} connects still in SYN_SENT: the destination is slow or unreachable", thousands(syn_sent))
    } else {
        format!(
            "{} concurrent ESTABLISHED connections: the pool or client opens too many connections to one destination",
            thousands(d.established)
        )
    };
    let reuse = if d.tw_reuse {
        format!(
            " (tcp_tw_reuse={} lets connect() take over TIME_WAIT ports older than {} ms here)",
            settings.tcp_tw_reuse,
            thousands(u64::from(settings.reuse_delay_ms()))
        )
    } else if d.time_wait > 0 {
        let why = match (settings.tcp_tw_reuse, settings.tcp_timestamps) {
            (_, 0) => "tcp_timestamps=0 disables tcp_tw_reuse".to_string(),
            (2, _) => "tcp_tw_reuse=2 covers loopback only".to_string(),
            (n, _) => format!("tcp_tw_reuse={n}"),
        };
        format!(" ({why}: TIME_WAIT holds each port for 60 s)")
    } else {
        String::new()
    };
    cause + &reuse
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
            family: if local_addr.is_ipv4() { Family::Inet } else { Family::Inet6 },
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
            census,
            settings,
            Counters::default(),
            None,
            "test".into(),
            "6.18".into(),
            NetnsInfo { name: "host".into(), inode: 1 },
            DumpInfo { sockets: census.sockets, duration_ms: 0.0 },
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
            tw(&mut census, "198.18.0.1", 32768 + (i % 17_000) as u16, "198.18.0.100", 5432, expires);
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
        assert_eq!(status.destinations_total, 2);
        let db = &status.destinations[0];
        assert_eq!((db.addr.as_str(), db.port), ("198.18.0.100", 5432));
        assert_eq!((db.time_wait, db.in_use, db.available), (24_000, 24_000, 28_131));
        assert!((db.close_rate_per_s - 400.0).abs() < 1e-9);
        assert_eq!(db.severity, Severity::Critical); // 85%
        assert_eq!(db.exhaustion_eta_s, None); // 400/s × 60 s < 28,131
        let v6 = &status.destinations[1];
        assert_eq!((v6.addr.as_str(), v6.port, v6.in_use), ("2001:2::100", 443, 30));
        assert_eq!(status.verdict.severity, Severity::Critical);
        let summary = &status.verdict.summary;
        assert!(summary.starts_with("CRITICAL: 198.18.0.100:5432 uses 85% of its 28,131 ports"), "{summary}");
        assert!(summary.contains("pool is bypassed"), "{summary}");
        assert!(summary.contains("tcp_tw_reuse=0"), "{summary}");
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
    fn top_dest_filter_and_thresholds() {
        let census = busy_census();
        let options = StatusOptions { top: 1, ..StatusOptions::default() };
        let status = build(&census, settings(0), &options);
        assert_eq!((status.destinations.len(), status.destinations_total), (1, 2));
        let options = StatusOptions { dest: Some("[2001:2::100]:443".parse().unwrap()), ..StatusOptions::default() };
        let status = build(&census, settings(0), &options);
        assert_eq!(status.destinations.len(), 1);
        assert_eq!(status.destinations[0].port, 443);
        assert_eq!(status.verdict.severity, Severity::Ok);
        let options = StatusOptions {
            thresholds: Thresholds { warning: 0.9, critical: 0.95 },
            ..StatusOptions::default()
        };
        assert_eq!(build(&census, settings(0), &options).verdict.severity, Severity::Ok);
    }

    #[test]
    fn json_has_the_documented_shape() {
        let status = build(&busy_census(), settings(0), &StatusOptions { top: 0, ..StatusOptions::default() });
        let json = serde_json::to_value(&status).unwrap();
        for key in ["netns", "kernel", "states", "ephemeral", "settings", "destinations", "inbound", "verdict"] {
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
            "addr", "port", "time_wait", "established", "in_use", "available", "utilization",
            "close_rate_per_s", "max_rate_per_s", "exhaustion_eta_s", "severity",
        ] {
            assert!(d.get(key).is_some(), "destinations[].{key}");
        }
        assert_eq!(d["addr"], "2001:2::100"); // no brackets
        assert!(d["exhaustion_eta_s"].is_null());
        assert_eq!(json["verdict"]["severity"], "critical");
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
        assert!("db.internal:5432".parse::<DestFilter>().unwrap_err().contains("ADDR:PORT"));
    }

    #[test]
    fn no_outbound_connections_is_ok() {
        let status = build(&Census::default(), settings(2), &StatusOptions::default());
        assert_eq!(status.verdict.severity, Severity::Ok);
        assert!(status.destinations.is_empty());
    }
}
