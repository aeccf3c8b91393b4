//! The census as Prometheus metrics.
//!
//! A fresh [`Registry`] is built from each snapshot and encoded once in both
//! formats; scrapes then only copy bytes. Label cardinality is bounded: the top
//! `max_destinations` destinations by sockets in use get their own series, the
//! rest are folded into one `dst="other"` series.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use twscope_core::diagnose;
use twscope_core::doctor::{Finding, Report};
use twscope_core::node::{NamespaceStatus, Node};
use twscope_core::status::{Destination, DestinationSum, Status};
use twscope_core::trace::{EADDRNOTAVAIL, FAILURE_CLASSES};

use crate::trace::TraceView;

type FloatGauge = Gauge<f64, AtomicU64>;

/// A series' labels in order: `netns` first in all-namespaces mode, then the
/// metric's own.
type Labels = Vec<(String, String)>;

/// A finding's labels: its stable string id (`port-range-narrow`) and level
/// name (`warning`), spelled as `twscope doctor --json` spells them.
fn finding_labels(f: &Finding) -> [(&'static str, String); 2] {
    [
        ("id", f.id.as_str().to_string()),
        ("severity", f.severity.name().to_string()),
    ]
}

/// The exporter's own numbers at the time of a snapshot.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExporterStats {
    /// Kernel dumps made since start.
    pub dumps: u64,
    /// Dumps that failed or timed out since start.
    pub errors: u64,
    /// How long this snapshot took (dump + model), seconds.
    pub duration_s: f64,
    /// The server's protections at work, since start.
    pub protections: ProtectionCounts,
}

/// What the server's limits did, since start (see `server::Limits`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtectionCounts {
    /// Idle connections closed to admit a new one at the connection cap.
    pub evicted: u64,
    /// Connections refused at the cap because every connection was busy.
    pub refused: u64,
    /// Connections closed for idleness or a slow request head or handshake.
    pub timed_out: u64,
    /// Requests answered 429 because the bcrypt queue was full.
    pub auth_throttled: u64,
}

/// One row of the bounded destination table.
struct Row {
    dst: String,
    dst_port: String,
    time_wait: u64,
    established: u64,
    in_use: u64,
    available: u64,
    utilization: f64,
    closes_per_s: f64,
    max_closes_per_s: f64,
    exhaustion_s: f64,
}

fn row(d: &Destination) -> Row {
    Row {
        dst: d.addr.clone(),
        dst_port: d.port.to_string(),
        time_wait: d.time_wait,
        established: d.established,
        in_use: d.in_use,
        available: u64::from(d.available),
        utilization: d.utilization,
        closes_per_s: d.close_rate_per_s,
        max_closes_per_s: d.max_rate_per_s,
        exhaustion_s: d.exhaustion_eta_s.unwrap_or(f64::INFINITY),
    }
}

/// `dst="other"`: destinations summed by the core ([`DestinationSum`]).
fn other_row(sum: DestinationSum) -> Row {
    Row {
        dst: "other".into(),
        dst_port: String::new(),
        time_wait: sum.time_wait,
        established: sum.established,
        in_use: sum.in_use,
        available: sum.available,
        utilization: sum.utilization,
        closes_per_s: sum.close_rate_per_s,
        max_closes_per_s: sum.max_rate_per_s,
        exhaustion_s: sum.exhaustion_eta_s.unwrap_or(f64::INFINITY),
    }
}

/// The top `max` destinations by sockets in use, and the rest as one
/// `dst="other"` row.
fn bounded_rows(status: &Status, max: usize) -> Vec<Row> {
    let (top, rest) = status.busiest_and_rest(max);
    let mut rows: Vec<Row> = top.iter().map(row).collect();
    rows.extend(rest.map(other_row));
    rows
}

/// One metric family of any of the three kinds the exporter uses.
enum Kind {
    Int(Family<Labels, Gauge>),
    Float(Family<Labels, FloatGauge>),
    Count(Family<Labels, Counter>),
}

struct Metric {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: Kind,
}

/// Collects series per family, so a family that gets series from several
/// namespaces is registered (and encoded) once, in first-use order.
#[derive(Default)]
struct Builder {
    metrics: Vec<Metric>,
    /// The `netns` label every per-namespace series gets; `None` when the
    /// exporter reads one namespace.
    netns: Option<String>,
}

impl Builder {
    fn family(&mut self, name: &'static str, help: &'static str, unit: Option<Unit>, make: fn() -> Kind) -> &mut Kind {
        let i = match self.metrics.iter().position(|m| m.name == name) {
            Some(i) => i,
            None => {
                self.metrics.push(Metric {
                    name,
                    help,
                    unit,
                    kind: make(),
                });
                self.metrics.len() - 1
            }
        };
        &mut self.metrics[i].kind
    }

    fn labels(&self, own: &[(&str, String)]) -> Labels {
        let netns = self.netns.iter().map(|n| ("netns".to_string(), n.clone()));
        netns
            .chain(own.iter().map(|(k, v)| (k.to_string(), v.clone())))
            .collect()
    }

    /// Registers an empty float family (so it is listed even without series).
    fn declare_float(&mut self, name: &'static str, help: &'static str, unit: Option<Unit>) {
        self.family(name, help, unit, || Kind::Float(Family::default()));
    }

    fn float(&mut self, name: &'static str, help: &'static str, unit: Option<Unit>, own: &[(&str, String)], v: f64) {
        let labels = self.labels(own);
        if let Kind::Float(f) = self.family(name, help, unit, || Kind::Float(Family::default())) {
            f.get_or_create(&labels).set(v);
        }
    }

    fn int(&mut self, name: &'static str, help: &'static str, own: &[(&str, String)], v: i64) {
        let labels = self.labels(own);
        if let Kind::Int(f) = self.family(name, help, None, || Kind::Int(Family::default())) {
            f.get_or_create(&labels).set(v);
        }
    }

    /// Adds `v` to an integer series (several findings of one id count up).
    fn int_add(&mut self, name: &'static str, help: &'static str, own: &[(&str, String)], v: i64) {
        let labels = self.labels(own);
        if let Kind::Int(f) = self.family(name, help, None, || Kind::Int(Family::default())) {
            f.get_or_create(&labels).inc_by(v);
        }
    }

    fn declare_int(&mut self, name: &'static str, help: &'static str) {
        self.family(name, help, None, || Kind::Int(Family::default()));
    }

    /// Registers an empty counter family (so it is listed even without series).
    fn declare_count(&mut self, name: &'static str, help: &'static str) {
        self.family(name, help, None, || Kind::Count(Family::default()));
    }

    fn count(&mut self, name: &'static str, help: &'static str, own: &[(&str, String)], v: u64) {
        let labels = self.labels(own);
        if let Kind::Count(f) = self.family(name, help, None, || Kind::Count(Family::default())) {
            f.get_or_create(&labels).inc_by(v);
        }
    }

    fn finish(self) -> Registry {
        let mut r = Registry::with_prefix("twscope");
        for m in self.metrics {
            match (m.kind, m.unit) {
                (Kind::Int(f), Some(u)) => r.register_with_unit(m.name, m.help, u, f),
                (Kind::Int(f), None) => r.register(m.name, m.help, f),
                (Kind::Float(f), Some(u)) => r.register_with_unit(m.name, m.help, u, f),
                (Kind::Float(f), None) => r.register(m.name, m.help, f),
                (Kind::Count(f), Some(u)) => r.register_with_unit(m.name, m.help, u, f),
                (Kind::Count(f), None) => r.register(m.name, m.help, f),
            }
        }
        r
    }
}

fn ratio() -> Option<Unit> {
    Some(Unit::Other("ratio".into()))
}

/// The destination families over `rows`.
fn destinations(b: &mut Builder, rows: &[Row]) {
    type Value = fn(&Row) -> f64;
    let families: [(&'static str, &'static str, Option<Unit>, Value); 8] = [
        ("destination_time_wait_sockets", "Outbound TIME_WAIT sockets per destination (dst without brackets)", None, |d| d.time_wait as f64),
        ("destination_established_sockets", "Outbound ESTABLISHED sockets per destination", None, |d| d.established as f64),
        ("destination_in_use_sockets", "Outbound sockets per destination in any state: each holds a source port", None, |d| d.in_use as f64),
        ("destination_available_ports", "Source ports a destination may use: the per-source budget times source addresses", None, |d| d.available as f64),
        ("destination_utilization", "Share of a destination's source ports taken (TIME_WAIT younger than the reuse delay when tcp_tw_reuse applies)", ratio(), |d| d.utilization),
        ("destination_closes_per_second", "Connections closed into TIME_WAIT per second, from the TIME_WAIT ages of one dump", None, |d| d.closes_per_s),
        ("destination_max_closes_per_second", "Highest sustainable close rate: available ports / 60 s (or / the reuse delay with tcp_tw_reuse)", None, |d| d.max_closes_per_s),
        ("destination_exhaustion", "Seconds until the destination runs out of source ports at the current rate; +Inf when not on course", Some(Unit::Seconds), |d| d.exhaustion_s),
    ];
    for (name, help, unit, value) in families {
        b.declare_float(name, help, unit.clone());
        for r in rows {
            b.float(
                name,
                help,
                unit.clone(),
                &[("dst", r.dst.clone()), ("dst_port", r.dst_port.clone())],
                value(r),
            );
        }
    }
}

const SOCKETS_HELP: &str = "TCP sockets of the network namespace by kernel state, as ss -tan counts them";

/// Everything of one namespace: sockets, destinations, range, sysctls,
/// counters, findings.
fn namespace(b: &mut Builder, status: &Status, report: &Report, max_destinations: usize) {
    b.declare_int("sockets", SOCKETS_HELP);
    for (state, n) in status.states.iter() {
        b.int(
            "sockets",
            SOCKETS_HELP,
            &[("state", state.name().to_string())],
            n as i64,
        );
    }
    destinations(b, &bounded_rows(status, max_destinations));
    b.float(
        "destinations",
        "Outbound destinations seen, before the --max-destinations cut",
        None,
        &[],
        status.destinations.len() as f64,
    );
    const INBOUND: &str = "Server-side TIME_WAIT sockets per listening port (no ephemeral port cost)";
    b.declare_int("inbound_time_wait_sockets", INBOUND);
    for i in &status.inbound {
        b.int(
            "inbound_time_wait_sockets",
            INBOUND,
            &[("port", i.port.to_string())],
            i.time_wait as i64,
        );
    }

    let e = &status.ephemeral;
    b.float(
        "ephemeral_range_ports",
        "Ports in net.ipv4.ip_local_port_range (inclusive)",
        None,
        &[],
        f64::from(e.size),
    );
    b.float(
        "ephemeral_reserved_ports",
        "Ports of net.ipv4.ip_local_reserved_ports inside the range",
        None,
        &[],
        f64::from(e.reserved),
    );
    b.float(
        "ephemeral_listener_ports",
        "Listening ports inside the range and not reserved",
        None,
        &[],
        e.listeners_in_range.len() as f64,
    );
    b.float(
        "ephemeral_available_ports",
        "Ports each (source address, destination) pair may use",
        None,
        &[],
        f64::from(e.available),
    );

    let s = &status.settings;
    b.float(
        "sysctl_tcp_tw_reuse",
        "net.ipv4.tcp_tw_reuse: 0 off, 1 on, 2 loopback only",
        None,
        &[],
        f64::from(s.tcp_tw_reuse),
    );
    b.float(
        "sysctl_tcp_tw_reuse_delay",
        "TIME_WAIT reuse delay (net.ipv4.tcp_tw_reuse_delay, or the built-in 1 s)",
        Some(Unit::Seconds),
        &[],
        f64::from(s.reuse_delay_ms()) / 1000.0,
    );
    b.float(
        "sysctl_tcp_timestamps",
        "net.ipv4.tcp_timestamps",
        None,
        &[],
        f64::from(s.tcp_timestamps),
    );
    b.float(
        "sysctl_tcp_max_tw_buckets",
        "net.ipv4.tcp_max_tw_buckets: the TIME_WAIT cap of the namespace",
        None,
        &[],
        s.tcp_max_tw_buckets as f64,
    );
    b.float(
        "sysctl_tcp_fin_timeout",
        "net.ipv4.tcp_fin_timeout (FIN_WAIT2 only, not TIME_WAIT)",
        Some(Unit::Seconds),
        &[],
        f64::from(s.tcp_fin_timeout),
    );
    if let Some(recycle) = s.tcp_tw_recycle {
        b.float(
            "sysctl_tcp_tw_recycle",
            "net.ipv4.tcp_tw_recycle (kernels before 4.12; must be 0)",
            None,
            &[],
            f64::from(recycle),
        );
    }

    let c = &status.counters;
    b.count(
        "kernel_active_opens",
        "Tcp ActiveOpens: outbound connect()s",
        &[],
        c.active_opens,
    );
    b.count(
        "kernel_time_wait_entered",
        "TcpExt TW: sockets that entered TIME_WAIT with the full timer; rate() is the close rate",
        &[],
        c.tw,
    );
    b.count(
        "kernel_time_wait_recycled",
        "TcpExt TWRecycled: TIME_WAIT 4-tuples taken over by tcp_tw_reuse",
        &[],
        c.tw_recycled,
    );
    b.count(
        "kernel_time_wait_killed",
        "TcpExt TWKilled: sockets given a short TIME_WAIT",
        &[],
        c.tw_killed,
    );
    b.count(
        "kernel_time_wait_overflow",
        "TcpExt TCPTimeWaitOverflow: TIME_WAIT skipped at tcp_max_tw_buckets",
        &[],
        c.tcp_time_wait_overflow,
    );
    b.float(
        "kernel_time_wait_sockets",
        "TIME_WAIT sockets per /proc/net/sockstat (tw)",
        None,
        &[],
        c.sockstat_tw as f64,
    );
    if let Some(ct) = status.conntrack {
        b.float("conntrack_entries", "nf_conntrack_count", None, &[], ct.count as f64);
        b.float("conntrack_entries_limit", "nf_conntrack_max", None, &[], ct.max as f64);
    }

    const FINDING: &str = "twscope doctor findings by id and severity (value: how many)";
    b.declare_int("finding", FINDING);
    for f in &report.findings {
        let [id, severity] = finding_labels(f);
        b.int_add("finding", FINDING, &[id, severity], 1);
    }
}

/// The exporter's own series, and `build_info` naming what it reads.
fn exporter(b: &mut Builder, stats: ExporterStats, reads: &str) {
    b.netns = None;
    b.float(
        "scrape_duration",
        "Time the kernel dump and model took for this snapshot",
        Some(Unit::Seconds),
        &[],
        stats.duration_s,
    );
    b.count(
        "dumps",
        "Kernel dumps made since start (concurrent scrapes share one)",
        &[],
        stats.dumps,
    );
    b.count(
        "scrape_errors",
        "Dumps that failed or timed out since start",
        &[],
        stats.errors,
    );
    let p = stats.protections;
    b.count(
        "exporter_connections_evicted",
        "Idle connections closed to admit a new one at --web.max-connections",
        &[],
        p.evicted,
    );
    b.count(
        "exporter_connections_refused",
        "Connections refused at --web.max-connections with every connection busy",
        &[],
        p.refused,
    );
    b.count(
        "exporter_connections_timed_out",
        "Connections closed for idleness or a slow request head or TLS handshake",
        &[],
        p.timed_out,
    );
    b.count(
        "exporter_auth_throttled",
        "Requests answered 429: too many password checks waiting",
        &[],
        p.auth_throttled,
    );
    b.int(
        "build_info",
        "twscope version and the network namespace it reads",
        &[
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("netns", reads.to_string()),
        ],
        1,
    );
}

/// `serve --trace`: per (process, destination) series, the tail in
/// `comm="other"`, and the tracer's own health.
fn traced(b: &mut Builder, view: &TraceView) {
    b.netns = None;
    const CONNECTS: &str = "connect() calls that reached port selection (failed ones too) per process and destination since the tracer attached; beyond --max-trace-series summed into comm=\"other\"";
    const TIME_WAIT: &str =
        "Connections closed first by this process: each left a TIME_WAIT socket holding a source port for 60 s";
    const FAILURES: &str = "Failed connect() calls by errno (EADDRNOTAVAIL: no source port left; always listed), per process and destination";
    b.declare_count("trace_connects", CONNECTS);
    b.declare_count("trace_time_wait_left", TIME_WAIT);
    b.declare_count("trace_connect_failures", FAILURES);
    for row in &view.rows {
        let labels = [
            ("comm", row.comm.clone()),
            ("container", row.container.clone()),
            ("netns", row.netns.clone()),
            ("dst", row.dst.clone()),
            ("dst_port", row.dst_port.clone()),
        ];
        b.count("trace_connects", CONNECTS, &labels, row.counts.connects);
        b.count("trace_time_wait_left", TIME_WAIT, &labels, row.counts.time_wait_left);
        for (class, n) in FAILURE_CLASSES.iter().zip(row.counts.failures) {
            if n > 0 || *class == EADDRNOTAVAIL {
                let mut with_errno = labels.to_vec();
                with_errno.push(("errno", class.to_string()));
                b.count("trace_connect_failures", FAILURES, &with_errno, n);
            }
        }
    }
    b.int(
        "trace_attached",
        "1 while the tracer's programs are attached and their map is read (serve --trace)",
        &[],
        i64::from(view.attached),
    );
    b.int(
        "trace_series",
        "Traced (process, destination) series, before the --max-trace-series cut",
        &[],
        view.series as i64,
    );
    b.int(
        "trace_flows",
        "Entries of the tracer's kernel map followed now (per process, namespace and destination; it holds 16384)",
        &[],
        view.flows as i64,
    );
    b.count(
        "trace_flows_forgotten",
        "Kernel map entries of exited processes removed (their counts stay in the counters)",
        &[],
        view.forgotten,
    );
    b.count(
        "trace_read_errors",
        "Reads of the tracer's kernel map that failed",
        &[],
        view.read_errors,
    );
    let l = view.losses;
    b.count(
        "trace_events_dropped",
        "Failure events lost to a full ring buffer (the failure counters stay exact)",
        &[],
        l.events_dropped,
    );
    b.count(
        "trace_flows_full",
        "New (process, destination) pairs not counted: the kernel map was full",
        &[],
        l.flows_full,
    );
    b.count(
        "trace_sockets_full",
        "Connections not followed to their close (TIME_WAITs left undercounted): the socket map was full",
        &[],
        l.sockets_full,
    );
}

/// Builds the registry for one snapshot of one namespace.
pub fn registry(status: &Status, report: &Report, max_destinations: usize, stats: ExporterStats) -> Registry {
    one_namespace(status, report, max_destinations, stats, None)
}

/// [`registry`] with `serve --trace`'s series (before the exporter's own).
pub fn traced_registry(
    status: &Status,
    report: &Report,
    max_destinations: usize,
    stats: ExporterStats,
    trace: &TraceView,
) -> Registry {
    one_namespace(status, report, max_destinations, stats, Some(trace))
}

fn one_namespace(
    status: &Status,
    report: &Report,
    max_destinations: usize,
    stats: ExporterStats,
    trace: Option<&TraceView>,
) -> Registry {
    let mut b = Builder::default();
    namespace(&mut b, status, report, max_destinations);
    if let Some(view) = trace {
        traced(&mut b, view);
    }
    exporter(&mut b, stats, &status.netns.name);
    b.finish()
}

/// Limits on the series of `serve --netns all`.
#[derive(Debug, Clone, Copy)]
pub struct NodeLimits {
    /// Namespaces with their own series, most pressed first; the rest are
    /// summed into `netns="other"`.
    pub max_namespaces: usize,
    /// Destinations with their own series in each of them; the rest into
    /// `dst="other"`.
    pub max_destinations: usize,
}

/// Builds the registry for one snapshot of the whole node: each of the
/// `max_namespaces` most pressed namespaces with a `netns` label (its inode)
/// and a `twscope_netns_info` series naming its pod, container and runtime
/// (`group_left` joins); the rest summed into `netns="other"`.
pub fn node_registry(node: &Node, limits: NodeLimits, stats: ExporterStats) -> Registry {
    whole_node(node, limits, stats, None)
}

/// [`node_registry`] with `serve --trace`'s series (before the exporter's own).
pub fn traced_node_registry(node: &Node, limits: NodeLimits, stats: ExporterStats, trace: &TraceView) -> Registry {
    whole_node(node, limits, stats, Some(trace))
}

fn whole_node(node: &Node, limits: NodeLimits, stats: ExporterStats, trace: Option<&TraceView>) -> Registry {
    let mut b = Builder::default();
    let readable: Vec<(&NamespaceStatus, &Status)> = node
        .namespaces
        .iter()
        .filter_map(|n| Some((n, n.status.as_ref()?)))
        .collect();
    let (top, rest) = readable.split_at(readable.len().min(limits.max_namespaces));
    for (n, status) in top {
        b.netns = Some(n.identity.inode.to_string());
        namespace(&mut b, status, &diagnose(status), limits.max_destinations);
    }
    if !rest.is_empty() {
        b.netns = Some("other".to_string());
        let mut states = twscope_core::census::StateCounts::default();
        for (_, status) in rest {
            for (state, n) in status.states.iter() {
                states.add(state, n);
            }
        }
        for (state, n) in states.iter() {
            b.int(
                "sockets",
                SOCKETS_HELP,
                &[("state", state.name().to_string())],
                n as i64,
            );
        }
        let sum = DestinationSum::of(rest.iter().flat_map(|(_, s)| s.destinations.iter()));
        if sum.destinations > 0 {
            destinations(&mut b, &[other_row(sum)]);
        }
    }
    b.netns = None;
    const INFO: &str =
        "Who a network namespace belongs to (join on netns with group_left; on pod_uid with kube-state-metrics)";
    for (n, _) in top {
        let id = &n.identity;
        let pod = id.pod.as_ref();
        let container = id.container.as_ref();
        b.int(
            "netns_info",
            INFO,
            &[
                ("netns", id.inode.to_string()),
                ("name", id.label()),
                ("pod", pod.and_then(|p| p.name.clone()).unwrap_or_default()),
                ("namespace", pod.and_then(|p| p.namespace.clone()).unwrap_or_default()),
                ("pod_uid", pod.map(|p| p.uid.clone()).unwrap_or_default()),
                ("container_id", container.map(|c| c.id.clone()).unwrap_or_default()),
                ("runtime", container.and_then(|c| c.runtime.clone()).unwrap_or_default()),
            ],
            1,
        );
    }
    const NAMESPACES: &str = "Network namespaces of the node: listed (with series or summed into netns=\"other\"), idle (no TCP socket), failed (not readable)";
    let listed = readable.len() as i64;
    b.int("namespaces", NAMESPACES, &[("state", "listed".into())], listed);
    b.int("namespaces", NAMESPACES, &[("state", "idle".into())], node.idle as i64);
    b.int(
        "namespaces",
        NAMESPACES,
        &[("state", "failed".into())],
        node.failed as i64,
    );
    if let Some(view) = trace {
        traced(&mut b, view);
    }
    exporter(&mut b, stats, "all");
    b.finish()
}

/// Both encodings of one registry.
pub fn encode(registry: &Registry) -> Result<(String, String), std::fmt::Error> {
    let mut openmetrics = String::new();
    prometheus_client::encoding::text::encode(&mut openmetrics, registry)?;
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok((openmetrics, text))
}

#[cfg(test)]
mod finding_label_tests {
    use super::*;
    use twscope_core::doctor::{FindingId, Group, Level};

    fn finding(id: FindingId, severity: Level) -> Finding {
        Finding {
            id,
            severity,
            group: Group::System,
            title: String::new(),
            evidence: Default::default(),
            explanation: String::new(),
            remedies: Vec::new(),
        }
    }

    #[test]
    fn finding_labels_are_the_json_ids() {
        let labels = finding_labels(&finding(FindingId::PortRangeNarrow, Level::Critical));
        assert_eq!(
            labels,
            [
                ("id", "port-range-narrow".to_string()),
                ("severity", "critical".to_string())
            ]
        );
        for id in FindingId::ALL {
            assert_eq!(finding_labels(&finding(id, Level::Info))[0].1, id.as_str());
        }
    }
}
