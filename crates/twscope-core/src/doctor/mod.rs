//! `twscope doctor`: the TIME_WAIT checklist (from Michal Drozd's post "TCP
//! TIME_WAIT Port Exhaustion: When Connection Pooling Isn't Enough", 2024),
//! evaluated on a live namespace.
//!
//! Each check is one small unit behind [`Check`] (the way node_exporter has one
//! collector per file): it reads a [`Status`] — census, settings, counters,
//! capacity model — and returns zero or more [`Finding`]s, each with the numbers
//! it rests on, why it matters, and copy-pasteable remedies.
//!
//! Findings are typed: a [`FindingId`] names what was found (its string form,
//! e.g. `port-range-narrow`, is the stable id of the JSON output and of the
//! `twscope_finding` metric), a [`Level`] how much it matters, and each
//! [`Remedy`] says what it is through a [`RemedyKind`] — a sysctl form, a
//! Kubernetes snippet, advice, or a code snippet in one [`Language`].
//!
//! ```no_run
//! use twscope_core::doctor::{self, FindingId};
//! use twscope_core::status::{Status, StatusOptions};
//!
//! let netns = twscope_core::netns::current("host")?;
//! let status = Status::collect(&StatusOptions::default(), netns)?;
//! let report = doctor::diagnose(&status);
//! for finding in &report.findings {
//!     println!("{} {}: {}", finding.severity, finding.id, finding.title);
//! }
//! if report.has(FindingId::PortRangeNarrow) {
//!     println!("widen the range");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod destinations;
mod port_range;
pub mod remedies;
mod server_side;
pub(crate) mod tables;
mod time_wait_settings;

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::capacity::hold_seconds;
use crate::status::{Destination, Status};

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Worth knowing; nothing to fix now (exit code 0).
    Info,
    /// Fix before it becomes an outage (exit code 1).
    Warning,
    /// An outage now or soon (exit code 2).
    Critical,
}

impl Level {
    /// Every level, mildest first.
    pub const ALL: [Level; 3] = [Level::Info, Level::Warning, Level::Critical];

    /// The level's name in JSON, metrics and text: `info`, `warning`, `critical`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }

    /// The documented exit code: 0 info, 1 warning, 2 critical.
    pub fn exit_code(self) -> i32 {
        match self {
            Level::Info => 0,
            Level::Warning => 1,
            Level::Critical => 2,
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

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The TIME_WAIT checklist's sections, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// Is this port exhaustion, towards which destination, how close.
    Diagnosis,
    /// Fixes in the application: reuse connections (do these first).
    Application,
    /// Kernel settings: range, reservations, tw_reuse.
    System,
    /// Tables and counters to watch.
    Monitoring,
}

impl Group {
    /// Every group, in the checklist's order.
    pub const ALL: [Group; 4] = [Group::Diagnosis, Group::Application, Group::System, Group::Monitoring];

    /// The group's heading in text output.
    pub fn title(self) -> &'static str {
        match self {
            Group::Diagnosis => "Diagnosis",
            Group::Application => "Application fixes (do first)",
            Group::System => "System tuning",
            Group::Monitoring => "Monitoring",
        }
    }
}

/// What a finding is about. Its string form ([`FindingId::as_str`], also its
/// `Display` and serde form) is the stable id of `twscope doctor --json` and
/// of the `twscope_finding{id=…}` metric: never change one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingId {
    /// `destination-pressure`: a destination's source ports are filling up.
    DestinationPressure,
    /// `pool-bypass-suspected`: many connections closed, few kept open.
    PoolBypassSuspected,
    /// `server-side-time-wait`: many inbound TIME_WAIT on a listening port.
    ServerSideTimeWait,
    /// `port-range-narrow`: the ephemeral range is narrow.
    PortRangeNarrow,
    /// `reserved-ports`: reserved ports eat into the range.
    ReservedPorts,
    /// `listeners-in-range`: a listener sits inside the range, unreserved.
    ListenersInRange,
    /// `tw-reuse-off`: `tcp_tw_reuse=0` while destinations are under pressure.
    TwReuseOff,
    /// `tw-reuse-loopback-only`: `tcp_tw_reuse=2` with a remote destination under pressure.
    TwReuseLoopbackOnly,
    /// `timestamps-off`: `tcp_timestamps=0`, which disables tw_reuse.
    TimestampsOff,
    /// `tw-recycle-present`: `tcp_tw_recycle` exists (kernels before 4.12).
    TwRecyclePresent,
    /// `fin-timeout-misconception`: `tcp_fin_timeout` lowered, to no effect on TIME_WAIT.
    FinTimeoutMisconception,
    /// `tw-buckets-overflow`: TIME_WAIT near or past `tcp_max_tw_buckets`.
    TwBucketsOverflow,
    /// `conntrack-pressure`: the conntrack table is filling up.
    ConntrackPressure,
}

impl FindingId {
    /// Every id, in checklist order.
    pub const ALL: [FindingId; 13] = [
        FindingId::DestinationPressure,
        FindingId::PoolBypassSuspected,
        FindingId::ServerSideTimeWait,
        FindingId::PortRangeNarrow,
        FindingId::ReservedPorts,
        FindingId::ListenersInRange,
        FindingId::TwReuseOff,
        FindingId::TwReuseLoopbackOnly,
        FindingId::TimestampsOff,
        FindingId::TwRecyclePresent,
        FindingId::FinTimeoutMisconception,
        FindingId::TwBucketsOverflow,
        FindingId::ConntrackPressure,
    ];

    /// The stable string id, e.g. `port-range-narrow`.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingId::DestinationPressure => "destination-pressure",
            FindingId::PoolBypassSuspected => "pool-bypass-suspected",
            FindingId::ServerSideTimeWait => "server-side-time-wait",
            FindingId::PortRangeNarrow => "port-range-narrow",
            FindingId::ReservedPorts => "reserved-ports",
            FindingId::ListenersInRange => "listeners-in-range",
            FindingId::TwReuseOff => "tw-reuse-off",
            FindingId::TwReuseLoopbackOnly => "tw-reuse-loopback-only",
            FindingId::TimestampsOff => "timestamps-off",
            FindingId::TwRecyclePresent => "tw-recycle-present",
            FindingId::FinTimeoutMisconception => "fin-timeout-misconception",
            FindingId::TwBucketsOverflow => "tw-buckets-overflow",
            FindingId::ConntrackPressure => "conntrack-pressure",
        }
    }

    /// The id whose string form is `id`, if any.
    pub fn from_name(id: &str) -> Option<FindingId> {
        FindingId::ALL.into_iter().find(|f| f.as_str() == id)
    }
}

impl fmt::Display for FindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for FindingId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A language the connection-reuse snippets are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Language {
    /// Java: HikariCP, `java.net.http.HttpClient`.
    Java,
    /// Go: `database/sql`, `net/http`.
    Go,
    /// Python: `psycopg_pool`, `requests.Session`.
    Python,
    /// Node.js: `http.Agent`, `pg.Pool`.
    Node,
    /// Rust: `reqwest::Client`, `sqlx::PgPool`.
    Rust,
}

impl Language {
    /// Every language with a snippet, in the order they are shown.
    pub const ALL: [Language; 5] = [
        Language::Java,
        Language::Go,
        Language::Python,
        Language::Node,
        Language::Rust,
    ];

    /// The machine-readable name, a remedy's `kind` in JSON: `java`, `go`, `python`, `node`, `rust`.
    pub fn id(self) -> &'static str {
        match self {
            Language::Java => "java",
            Language::Go => "go",
            Language::Python => "python",
            Language::Node => "node",
            Language::Rust => "rust",
        }
    }

    /// The name people use: `Java`, `Go`, `Python`, `Node.js`, `Rust`.
    pub fn name(self) -> &'static str {
        match self {
            Language::Java => "Java",
            Language::Go => "Go",
            Language::Python => "Python",
            Language::Node => "Node.js",
            Language::Rust => "Rust",
        }
    }
}

impl Serialize for Language {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a remedy is, and so how a view shows it. Its string form
/// ([`RemedyKind::as_str`]) is the remedy's `kind` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RemedyKind {
    /// `sysctl -w` lines: in force at once, lost at reboot (`sysctl`).
    Sysctl,
    /// A `/etc/sysctl.d/` file body, loaded at boot (`sysctl.d`).
    SysctlD,
    /// A pod's `securityContext.sysctls` snippet (`kubernetes`).
    Kubernetes,
    /// Advice in words for the application or its peers, no code (`application`).
    Application,
    /// Code that reuses connections in one language (`java`, `go`, …).
    Snippet {
        /// The snippet's language.
        language: Language,
    },
}

impl RemedyKind {
    /// The string form: `sysctl`, `sysctl.d`, `kubernetes`, `application`,
    /// or the snippet's language id.
    pub fn as_str(self) -> &'static str {
        match self {
            RemedyKind::Sysctl => "sysctl",
            RemedyKind::SysctlD => "sysctl.d",
            RemedyKind::Kubernetes => "kubernetes",
            RemedyKind::Application => "application",
            RemedyKind::Snippet { language } => language.id(),
        }
    }
}

impl fmt::Display for RemedyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RemedyKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One way to fix a finding, ready to paste.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Remedy {
    /// What it is: a sysctl form, Kubernetes, advice, or a code snippet.
    pub kind: RemedyKind,
    /// One line saying what it does.
    pub title: String,
    /// The text to paste (or, for advice, to read).
    pub text: String,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What was found; its string form is the stable id.
    pub id: FindingId,
    /// How much it matters.
    pub severity: Level,
    /// The checklist section it belongs to.
    pub group: Group,
    /// One line, naming the destination, port or setting concerned.
    pub title: String,
    /// The numbers the finding rests on.
    pub evidence: Map<String, Value>,
    /// Why it matters, in words; every number in it comes from the model.
    pub explanation: String,
    /// Ways to fix it: every form, whatever a view chooses to show.
    pub remedies: Vec<Remedy>,
}

/// One check of the checklist.
pub trait Check {
    /// The finding ids it may return.
    fn ids(&self) -> &'static [FindingId];
    /// Evaluates the check on one namespace's status.
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
    /// The findings, worst first, then in checklist order.
    pub findings: Vec<Finding>,
    /// The highest level found; `None` when nothing is found (`"ok"` in JSON).
    #[serde(serialize_with = "serialize_worst")]
    pub worst: Option<Level>,
}

fn serialize_worst<S: Serializer>(worst: &Option<Level>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(worst.map_or("ok", Level::name))
}

impl Report {
    /// Builds a report from findings in any order: sorts them worst first,
    /// then in checklist order (stable within a check), and sets `worst`.
    pub fn new(mut findings: Vec<Finding>) -> Report {
        findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.group.cmp(&b.group)));
        let worst = findings.iter().map(|f| f.severity).max();
        Report { findings, worst }
    }

    /// The worst level's name, or `ok` when nothing was found.
    pub fn worst_name(&self) -> &'static str {
        self.worst.map_or("ok", Level::name)
    }

    /// 0 when nothing reaches warning, 1 warning, 2 critical.
    pub fn exit_code(&self) -> i32 {
        self.worst.map_or(0, Level::exit_code)
    }

    /// Whether a finding of `id` is present.
    pub fn has(&self, id: FindingId) -> bool {
        self.findings.iter().any(|f| f.id == id)
    }

    /// The report with its code snippets narrowed to `languages` — the
    /// runtimes of the processes a trace found — when any is known; with none
    /// known every language stays, as without a trace.
    pub fn speaking_to(mut self, languages: &[Language]) -> Report {
        if languages.is_empty() {
            return self;
        }
        for finding in &mut self.findings {
            finding.remedies.retain(|r| match r.kind {
                RemedyKind::Snippet { language } => languages.contains(&language),
                _ => true,
            });
        }
        self
    }

    /// The findings of `id` (several for per-destination or per-port checks).
    pub fn of(&self, id: FindingId) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.id == id)
    }
}

/// Runs every check on `status`: every destination it holds is seen.
pub fn diagnose(status: &Status) -> Report {
    Report::new(checks().iter().flat_map(|c| c.run(status)).collect())
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

/// A duration in prose: `60 s`, `1 s`, `1.5 s`, `250 ms`.
pub(crate) fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// How long a closed connection keeps its source port in `status`'
/// namespace, towards a destination where `tcp_tw_reuse` applies or not: the
/// capacity model's hold time (the kernel's real TIME_WAIT lifetime, or the
/// reuse delay), which every duration and rate in the prose quotes.
fn hold_s(status: &Status, tw_reuse: bool) -> f64 {
    hold_seconds(
        tw_reuse,
        status.settings.reuse_delay_ms(),
        status.time_wait_lifetime.mean_s,
    )
}

/// Whether `tcp_tw_reuse=1` would apply to a remote destination with the
/// rest of `settings` as they are (it needs `tcp_timestamps`): the one rule,
/// [`crate::linux::tw_reuse_applies`], asked about the proposed value.
pub(crate) fn reuse_would_apply(settings: &crate::kernel::Settings) -> bool {
    let any = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    crate::linux::tw_reuse_applies(1, settings.tcp_timestamps, any, any)
}

/// Destinations named in a title: all of them up to three (`a`, `a and b`,
/// `a, b and c`), else the first three and how many more. Evidence lists
/// them all ([`endpoints`]).
fn named(destinations: &[&Destination]) -> String {
    const SHOWN: usize = 3;
    let names = endpoints(destinations);
    match names.len() {
        0 => String::new(),
        1 => names[0].clone(),
        n if n <= SHOWN => format!("{} and {}", names[..n - 1].join(", "), names[n - 1]),
        n => format!("{} and {} more", names[..SHOWN].join(", "), n - SHOWN),
    }
}

/// Every destination's `addr:port`, for evidence.
fn endpoints(destinations: &[&Destination]) -> Vec<String> {
    destinations.iter().map(|d| d.endpoint()).collect()
}

#[cfg(test)]
pub(crate) mod test_support {
    //! The shared fixtures, and the ids of a status's findings.
    pub use crate::fixtures::*;
    use crate::status::Status;

    pub fn ids(status: &Status) -> Vec<super::FindingId> {
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
        let status = Host::default()
            .outbound("198.18.0.1", "198.18.0.9", 5432, 20, 60, 10)
            .status(settings());
        let report = diagnose(&status);
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
        assert_eq!((report.worst, report.worst_name(), report.exit_code()), (None, "ok", 0));
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::json!({"findings": [], "worst": "ok"})
        );
    }

    #[test]
    fn finding_ids_keep_their_string_forms() {
        // These strings are the JSON ids and the metric's id label: a change
        // here breaks users' alerts and scripts.
        let expected = [
            "destination-pressure",
            "pool-bypass-suspected",
            "server-side-time-wait",
            "port-range-narrow",
            "reserved-ports",
            "listeners-in-range",
            "tw-reuse-off",
            "tw-reuse-loopback-only",
            "timestamps-off",
            "tw-recycle-present",
            "fin-timeout-misconception",
            "tw-buckets-overflow",
            "conntrack-pressure",
        ];
        assert_eq!(FindingId::ALL.map(FindingId::as_str), expected);
        for id in FindingId::ALL {
            assert_eq!(id.to_string(), id.as_str());
            assert_eq!(serde_json::to_value(id).unwrap(), id.as_str());
            assert_eq!(FindingId::from_name(id.as_str()), Some(id));
        }
        assert_eq!(FindingId::from_name("port_range_narrow"), None);
        // Every id belongs to exactly one check, and every check's ids are known.
        let mut declared: Vec<FindingId> = checks().iter().flat_map(|c| c.ids().iter().copied()).collect();
        declared.sort_unstable();
        let mut all = FindingId::ALL.to_vec();
        all.sort_unstable();
        assert_eq!(declared, all);
    }

    #[test]
    fn remedy_kinds_and_levels_keep_their_string_forms() {
        let kinds = [
            (RemedyKind::Sysctl, "sysctl"),
            (RemedyKind::SysctlD, "sysctl.d"),
            (RemedyKind::Kubernetes, "kubernetes"),
            (RemedyKind::Application, "application"),
            (
                RemedyKind::Snippet {
                    language: Language::Java,
                },
                "java",
            ),
            (RemedyKind::Snippet { language: Language::Go }, "go"),
            (
                RemedyKind::Snippet {
                    language: Language::Python,
                },
                "python",
            ),
            (
                RemedyKind::Snippet {
                    language: Language::Node,
                },
                "node",
            ),
            (
                RemedyKind::Snippet {
                    language: Language::Rust,
                },
                "rust",
            ),
        ];
        for (kind, name) in kinds {
            assert_eq!((kind.as_str(), kind.to_string()), (name, name.to_string()));
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
        }
        assert_eq!(Level::ALL.map(Level::name), ["info", "warning", "critical"]);
        assert_eq!(
            Level::ALL.map(|l| serde_json::to_value(l).unwrap()),
            ["info", "warning", "critical"]
        );
        assert_eq!(Level::ALL.map(Level::exit_code), [0, 1, 2]);
        let remedy = Remedy {
            kind: RemedyKind::Snippet {
                language: Language::Node,
            },
            title: "t".into(),
            text: "x".into(),
        };
        assert_eq!(
            serde_json::to_value(remedy).unwrap(),
            serde_json::json!({"kind": "node", "title": "t", "text": "x"})
        );
    }

    #[test]
    fn every_id_is_declared_by_its_check_and_findings_sort_worst_first() {
        let declared: Vec<FindingId> = checks().iter().flat_map(|c| c.ids().iter().copied()).collect();
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
        assert_eq!((report.worst, report.exit_code()), (Some(Level::Critical), 2));
        assert!(report.has(FindingId::TwRecyclePresent) && !report.has(FindingId::ConntrackPressure));
        assert_eq!(report.of(FindingId::ListenersInRange).count(), 1);
        // JSON keeps its shape: ids, severities and kinds are strings.
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["worst"], "critical");
        for key in [
            "id",
            "severity",
            "group",
            "title",
            "evidence",
            "explanation",
            "remedies",
        ] {
            assert!(json["findings"][0].get(key).is_some(), "{key}");
        }
        for f in json["findings"].as_array().unwrap() {
            assert!(FindingId::from_name(f["id"].as_str().unwrap()).is_some(), "{f}");
            assert!(f["severity"].is_string());
            for r in f["remedies"].as_array().unwrap() {
                assert!(
                    r["kind"].is_string() && r["title"].is_string() && r["text"].is_string(),
                    "{r}"
                );
            }
        }
    }

    #[test]
    fn titles_name_a_few_destinations_and_count_the_rest() {
        let host = Host::default()
            .outbound("198.18.0.1", "198.18.0.2", 80, 10, 60, 0)
            .outbound("198.18.0.1", "198.18.0.3", 80, 9, 60, 0)
            .outbound("198.18.0.1", "198.18.0.4", 80, 8, 60, 0)
            .outbound("198.18.0.1", "198.18.0.5", 80, 7, 60, 0);
        let status = host.status(settings());
        let all: Vec<&Destination> = status.destinations.iter().collect();
        assert_eq!(named(&all[..1]), "198.18.0.2:80");
        assert_eq!(named(&all[..2]), "198.18.0.2:80 and 198.18.0.3:80");
        assert_eq!(named(&all[..3]), "198.18.0.2:80, 198.18.0.3:80 and 198.18.0.4:80");
        assert_eq!(named(&all), "198.18.0.2:80, 198.18.0.3:80, 198.18.0.4:80 and 1 more");
        assert_eq!(endpoints(&all).len(), 4);
        assert_eq!(
            (seconds(60.0), seconds(1.0), seconds(1.5), seconds(0.25)),
            ("60 s".into(), "1 s".into(), "1.5 s".into(), "250 ms".into())
        );
    }
}
