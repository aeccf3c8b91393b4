//! `twscope doctor`: the seed post's checklist, evaluated on a live namespace.
//!
//! Each check is one small unit behind [`Check`] (the way node_exporter has one
//! collector per file): it reads a [`Status`] — census, settings, counters,
//! capacity model — and returns zero or more [`Finding`]s, each with the numbers
//! it rests on, why it matters, and copy-pasteable remedies.
//!
//! ```no_run
//! use twscope_core::doctor;
//! use twscope_core::status::{Status, StatusOptions};
//!
//! let netns = twscope_core::netns::current("host")?;
//! let status = Status::collect(&StatusOptions { top: 0, ..StatusOptions::default() }, netns)?;
//! for finding in doctor::diagnose(&status).findings {
//!     println!("{} {}: {}", finding.severity.name(), finding.id, finding.title);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod destinations;
mod port_range;
pub mod remedies;
mod server_side;
pub(crate) mod tables;
mod time_wait_settings;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::status::Status;

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warning,
    Critical,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }

    fn from_severity(severity: crate::Severity) -> Level {
        match severity {
            crate::Severity::Critical => Level::Critical,
            crate::Severity::Warning => Level::Warning,
            crate::Severity::Ok => Level::Info,
        }
    }
}

/// The seed post's checklist sections, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    Diagnosis,
    Application,
    System,
    Monitoring,
}

impl Group {
    pub const ALL: [Group; 4] = [Group::Diagnosis, Group::Application, Group::System, Group::Monitoring];

    pub fn title(self) -> &'static str {
        match self {
            Group::Diagnosis => "Diagnosis",
            Group::Application => "Application fixes (do first)",
            Group::System => "System tuning",
            Group::Monitoring => "Monitoring",
        }
    }
}

/// One way to fix a finding, ready to paste.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Remedy {
    /// What it is: `sysctl`, `sysctl.d`, `kubernetes`, `java`, `go`, …
    pub kind: String,
    pub title: String,
    pub text: String,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Stable identifier, e.g. `destination-pressure`.
    pub id: &'static str,
    pub severity: Level,
    pub group: Group,
    /// One line, naming the destination, port or setting concerned.
    pub title: String,
    /// The numbers the finding rests on.
    pub evidence: Map<String, Value>,
    pub explanation: String,
    pub remedies: Vec<Remedy>,
}

/// One check of the checklist.
pub trait Check {
    /// The finding ids it may return.
    fn ids(&self) -> &'static [&'static str];
    fn run(&self, status: &Status) -> Vec<Finding>;
}

/// Every check, in checklist order.
pub fn checks() -> Vec<Box<dyn Check>> {
    vec![
        Box::new(destinations::DestinationPressure),
        Box::new(destinations::PoolBypass),
        Box::new(server_side::ServerSideTimeWait),
        Box::new(port_range::PortRange),
        Box::new(time_wait_settings::TimeWaitSettings),
        Box::new(tables::TimeWaitBuckets),
        Box::new(tables::ConntrackPressure),
    ]
}

/// All findings of a namespace, worst first.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// The worst severity found: `ok` when nothing is found, else the highest level.
    pub worst: &'static str,
}

impl Report {
    /// 0 when nothing reaches warning, 1 warning, 2 critical.
    pub fn exit_code(&self) -> i32 {
        match self.findings.iter().map(|f| f.severity).max() {
            Some(Level::Critical) => 2,
            Some(Level::Warning) => 1,
            _ => 0,
        }
    }

    /// Whether a finding of `id` is present.
    pub fn has(&self, id: &str) -> bool {
        self.findings.iter().any(|f| f.id == id)
    }
}

/// Runs every check on `status` (collect it with `top: 0`, so every
/// destination is seen).
pub fn diagnose(status: &Status) -> Report {
    let mut findings: Vec<Finding> = checks().iter().flat_map(|c| c.run(status)).collect();
    // Worst first; then the checklist's order; stable within a check.
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.group.cmp(&b.group)));
    let worst = findings.iter().map(|f| f.severity).max().map_or("ok", Level::name);
    Report { findings, worst }
}

/// Builds an evidence map from `(name, value)` pairs.
fn evidence<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A float rounded for display in evidence (JSON keeps it a number).
fn round(value: f64, places: i32) -> Value {
    let scale = 10f64.powi(places);
    serde_json::json!((value * scale).round() / scale)
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Hand-built statuses for the checks' unit tests.
    use crate::census::{Census, TupleKey, TupleStats};
    use crate::kernel::{Counters, PortRanges, Settings};
    use crate::netns::NetnsInfo;
    use crate::sockdiag::TcpState;
    use crate::status::{DumpInfo, Status, StatusOptions};

    pub fn settings() -> Settings {
        Settings {
            port_range_low: 32768,
            port_range_high: 60999,
            reserved_ports: PortRanges::default(),
            tcp_tw_reuse: 2,
            tcp_tw_reuse_delay_ms: Some(1000),
            tcp_timestamps: 1,
            tcp_max_tw_buckets: 262_144,
            tcp_fin_timeout: 60,
            tcp_tw_recycle: None,
        }
    }

    /// A census builder: outbound tuples with TIME_WAIT spread evenly over
    /// `seconds` of age, ESTABLISHED, listeners, inbound TIME_WAIT.
    #[derive(Default)]
    pub struct Host {
        pub census: Census,
        pub counters: Counters,
        pub conntrack: Option<crate::kernel::Conntrack>,
    }

    impl Host {
        pub fn outbound(mut self, src: &str, dst: &str, port: u16, time_wait: u32, seconds: u32, established: u64) -> Host {
            let key = TupleKey { src: src.parse().unwrap(), dst: dst.parse().unwrap(), dst_port: port };
            let stats: &mut TupleStats = self.census.outbound.entry(key).or_default();
            for i in 0..time_wait {
                stats.time_wait_age[(i % seconds.max(1)) as usize] += 1;
            }
            stats.states.add(TcpState::TimeWait, u64::from(time_wait));
            stats.states.add(TcpState::Established, established);
            self.census.states.add(TcpState::TimeWait, u64::from(time_wait));
            self.census.states.add(TcpState::Established, established);
            self
        }

        pub fn listener(mut self, addr: &str, port: u16) -> Host {
            self.census.listeners.insert(addr.parse().unwrap(), port);
            self.census.states.add(TcpState::Listen, 1);
            self
        }

        pub fn inbound_time_wait(mut self, port: u16, n: u64) -> Host {
            self.census.inbound.entry(port).or_default().add(TcpState::TimeWait, n);
            self.census.states.add(TcpState::TimeWait, n);
            self
        }

        pub fn status(&self, settings: Settings) -> Status {
            let mut counters = self.counters.clone();
            counters.sockstat_tw = self.census.states.get(TcpState::TimeWait);
            Status::build(
                &self.census,
                settings,
                counters,
                self.conntrack,
                "test".into(),
                "6.18.0".into(),
                NetnsInfo { name: "test".into(), inode: 1 },
                DumpInfo { sockets: self.census.sockets, duration_ms: 0.0 },
                &StatusOptions { top: 0, ..StatusOptions::default() },
            )
        }
    }

    pub fn ids(status: &Status) -> Vec<&'static str> {
        let mut ids: Vec<_> = super::diagnose(status).findings.iter().map(|f| f.id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn a_quiet_host_has_no_findings() {
        let status = Host::default().outbound("198.18.0.1", "198.18.0.9", 5432, 20, 60, 10).status(settings());
        let report = diagnose(&status);
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
        assert_eq!((report.worst, report.exit_code()), ("ok", 0));
    }

    #[test]
    fn every_id_is_declared_by_its_check_and_findings_sort_worst_first() {
        let declared: Vec<&str> = checks().iter().flat_map(|c| c.ids().iter().copied()).collect();
        // A host that trips many checks at once.
        let mut settings = settings();
        settings.tcp_tw_reuse = 0;
        settings.tcp_fin_timeout = 10;
        settings.tcp_tw_recycle = Some(1);
        settings.port_range_low = 40000;
        settings.port_range_high = 40999;
        let status = Host::default()
            .outbound("198.18.0.1", "198.18.0.9", 5432, 900, 10, 0)
            .listener("0.0.0.0", 40500)
            .inbound_time_wait(8080, 5000)
            .status(settings);
        let report = diagnose(&status);
        for f in &report.findings {
            assert!(declared.contains(&f.id), "{} is not declared", f.id);
            assert!(!f.title.is_empty() && !f.explanation.is_empty());
        }
        let levels: Vec<Level> = report.findings.iter().map(|f| f.severity).collect();
        assert!(levels.windows(2).all(|w| w[0] >= w[1]), "{levels:?}");
        assert_eq!((report.worst, report.exit_code()), ("critical", 2));
        let json = serde_json::to_value(&report).unwrap();
        for key in ["id", "severity", "title", "evidence", "remedies"] {
            assert!(json["findings"][0].get(key).is_some(), "{key}");
        }
    }
}
