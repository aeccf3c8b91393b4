//! The census as Prometheus metrics.
//!
//! A fresh [`Registry`] is built from each snapshot and encoded once in both
//! formats; scrapes then only copy bytes. Label cardinality is bounded: the top
//! `max_destinations` destinations by sockets in use get their own series, the
//! rest are folded into one `dst="other"` series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

use twscope_core::doctor::{Finding, Report};
#[cfg(doc)]
use twscope_core::status::DestinationSum;
use twscope_core::status::{Destination, Status};

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestinationLabels {
    /// Address without brackets, or `other` for the folded rest.
    dst: String,
    /// Port, empty for `other`.
    dst_port: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabel {
    port: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    id: String,
    severity: String,
}

/// A finding's labels: its stable string id (`port-range-narrow`) and level
/// name (`warning`), spelled as `twscope doctor --json` spells them.
fn finding_labels(f: &Finding) -> FindingLabels {
    FindingLabels {
        id: f.id.as_str().to_string(),
        severity: f.severity.name().to_string(),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    netns: String,
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
    labels: DestinationLabels,
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
        labels: DestinationLabels {
            dst: d.addr.clone(),
            dst_port: d.port.to_string(),
        },
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

/// The top `max` destinations by sockets in use, and the rest as one
/// `dst="other"` row summed by the core ([`DestinationSum`]).
fn bounded_rows(status: &Status, max: usize) -> Vec<Row> {
    let (top, rest) = status.busiest_and_rest(max);
    let mut rows: Vec<Row> = top.iter().map(row).collect();
    if let Some(sum) = rest {
        rows.push(Row {
            labels: DestinationLabels {
                dst: "other".into(),
                dst_port: String::new(),
            },
            time_wait: sum.time_wait,
            established: sum.established,
            in_use: sum.in_use,
            available: sum.available,
            utilization: sum.utilization,
            closes_per_s: sum.close_rate_per_s,
            max_closes_per_s: sum.max_rate_per_s,
            exhaustion_s: sum.exhaustion_eta_s.unwrap_or(f64::INFINITY),
        });
    }
    rows
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    let g = FloatGauge::default();
    g.set(value);
    registry.register(name, help, g);
}

fn gauge_unit(registry: &mut Registry, name: &str, help: &str, unit: Unit, value: f64) {
    let g = FloatGauge::default();
    g.set(value);
    registry.register_with_unit(name, help, unit, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c: Counter = Counter::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

/// A family of float gauges over destination rows.
fn destination_family(
    registry: &mut Registry,
    rows: &[Row],
    name: &str,
    help: &str,
    unit: Option<Unit>,
    value: impl Fn(&Row) -> f64,
) {
    let family = Family::<DestinationLabels, FloatGauge>::default();
    for r in rows {
        family.get_or_create(&r.labels).set(value(r));
    }
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, family),
        None => registry.register(name, help, family),
    }
}

/// Builds the registry for one snapshot.
pub fn registry(status: &Status, report: &Report, max_destinations: usize, stats: ExporterStats) -> Registry {
    let mut r = Registry::with_prefix("twscope");

    let sockets = Family::<StateLabel, Gauge>::default();
    for (state, n) in status.states.iter() {
        sockets
            .get_or_create(&StateLabel {
                state: state.name().to_string(),
            })
            .set(n as i64);
    }
    r.register(
        "sockets",
        "TCP sockets of the network namespace by kernel state, as ss -tan counts them",
        sockets,
    );

    let rows = bounded_rows(status, max_destinations);
    destination_family(
        &mut r,
        &rows,
        "destination_time_wait_sockets",
        "Outbound TIME_WAIT sockets per destination (dst without brackets)",
        None,
        |d| d.time_wait as f64,
    );
    destination_family(
        &mut r,
        &rows,
        "destination_established_sockets",
        "Outbound ESTABLISHED sockets per destination",
        None,
        |d| d.established as f64,
    );
    destination_family(
        &mut r,
        &rows,
        "destination_in_use_sockets",
        "Outbound sockets per destination in any state: each holds a source port",
        None,
        |d| d.in_use as f64,
    );
    destination_family(
        &mut r,
        &rows,
        "destination_available_ports",
        "Source ports a destination may use: the per-source budget times source addresses",
        None,
        |d| d.available as f64,
    );
    destination_family(&mut r, &rows, "destination_utilization", "Share of a destination's source ports taken (TIME_WAIT younger than the reuse delay when tcp_tw_reuse applies)", Some(Unit::Other("ratio".into())), |d| d.utilization);
    destination_family(
        &mut r,
        &rows,
        "destination_closes_per_second",
        "Connections closed into TIME_WAIT per second, from the TIME_WAIT ages of one dump",
        None,
        |d| d.closes_per_s,
    );
    destination_family(
        &mut r,
        &rows,
        "destination_max_closes_per_second",
        "Highest sustainable close rate: available ports / 60 s (or / the reuse delay with tcp_tw_reuse)",
        None,
        |d| d.max_closes_per_s,
    );
    destination_family(
        &mut r,
        &rows,
        "destination_exhaustion",
        "Seconds until the destination runs out of source ports at the current rate; +Inf when not on course",
        Some(Unit::Seconds),
        |d| d.exhaustion_s,
    );
    gauge(
        &mut r,
        "destinations",
        "Outbound destinations seen, before the --max-destinations cut",
        status.destinations.len() as f64,
    );

    let inbound = Family::<PortLabel, Gauge>::default();
    for i in &status.inbound {
        inbound
            .get_or_create(&PortLabel {
                port: i.port.to_string(),
            })
            .set(i.time_wait as i64);
    }
    r.register(
        "inbound_time_wait_sockets",
        "Server-side TIME_WAIT sockets per listening port (no ephemeral port cost)",
        inbound,
    );

    let e = &status.ephemeral;
    gauge(
        &mut r,
        "ephemeral_range_ports",
        "Ports in net.ipv4.ip_local_port_range (inclusive)",
        f64::from(e.size),
    );
    gauge(
        &mut r,
        "ephemeral_reserved_ports",
        "Ports of net.ipv4.ip_local_reserved_ports inside the range",
        f64::from(e.reserved),
    );
    gauge(
        &mut r,
        "ephemeral_listener_ports",
        "Listening ports inside the range and not reserved",
        e.listeners_in_range.len() as f64,
    );
    gauge(
        &mut r,
        "ephemeral_available_ports",
        "Ports each (source address, destination) pair may use",
        f64::from(e.available),
    );

    let s = &status.settings;
    gauge(
        &mut r,
        "sysctl_tcp_tw_reuse",
        "net.ipv4.tcp_tw_reuse: 0 off, 1 on, 2 loopback only",
        f64::from(s.tcp_tw_reuse),
    );
    gauge_unit(
        &mut r,
        "sysctl_tcp_tw_reuse_delay",
        "TIME_WAIT reuse delay (net.ipv4.tcp_tw_reuse_delay, or the built-in 1 s)",
        Unit::Seconds,
        f64::from(s.reuse_delay_ms()) / 1000.0,
    );
    gauge(
        &mut r,
        "sysctl_tcp_timestamps",
        "net.ipv4.tcp_timestamps",
        f64::from(s.tcp_timestamps),
    );
    gauge(
        &mut r,
        "sysctl_tcp_max_tw_buckets",
        "net.ipv4.tcp_max_tw_buckets: the TIME_WAIT cap of the namespace",
        s.tcp_max_tw_buckets as f64,
    );
    gauge_unit(
        &mut r,
        "sysctl_tcp_fin_timeout",
        "net.ipv4.tcp_fin_timeout (FIN_WAIT2 only, not TIME_WAIT)",
        Unit::Seconds,
        f64::from(s.tcp_fin_timeout),
    );
    if let Some(recycle) = s.tcp_tw_recycle {
        gauge(
            &mut r,
            "sysctl_tcp_tw_recycle",
            "net.ipv4.tcp_tw_recycle (kernels before 4.12; must be 0)",
            f64::from(recycle),
        );
    }

    let c = &status.counters;
    counter(
        &mut r,
        "kernel_active_opens",
        "Tcp ActiveOpens: outbound connect()s",
        c.active_opens,
    );
    counter(
        &mut r,
        "kernel_time_wait_entered",
        "TcpExt TW: sockets that entered TIME_WAIT with the full timer; rate() is the close rate",
        c.tw,
    );
    counter(
        &mut r,
        "kernel_time_wait_recycled",
        "TcpExt TWRecycled: TIME_WAIT 4-tuples taken over by tcp_tw_reuse",
        c.tw_recycled,
    );
    counter(
        &mut r,
        "kernel_time_wait_killed",
        "TcpExt TWKilled: sockets given a short TIME_WAIT",
        c.tw_killed,
    );
    counter(
        &mut r,
        "kernel_time_wait_overflow",
        "TcpExt TCPTimeWaitOverflow: TIME_WAIT skipped at tcp_max_tw_buckets",
        c.tcp_time_wait_overflow,
    );
    gauge(
        &mut r,
        "kernel_time_wait_sockets",
        "TIME_WAIT sockets per /proc/net/sockstat (tw)",
        c.sockstat_tw as f64,
    );
    if let Some(ct) = status.conntrack {
        gauge(&mut r, "conntrack_entries", "nf_conntrack_count", ct.count as f64);
        gauge(&mut r, "conntrack_entries_limit", "nf_conntrack_max", ct.max as f64);
    }

    let findings = Family::<FindingLabels, Gauge>::default();
    for f in &report.findings {
        findings.get_or_create(&finding_labels(f)).inc();
    }
    r.register(
        "finding",
        "twscope doctor findings by id and severity (value: how many)",
        findings,
    );

    gauge_unit(
        &mut r,
        "scrape_duration",
        "Time the kernel dump and model took for this snapshot",
        Unit::Seconds,
        stats.duration_s,
    );
    counter(
        &mut r,
        "dumps",
        "Kernel dumps made since start (concurrent scrapes share one)",
        stats.dumps,
    );
    counter(
        &mut r,
        "scrape_errors",
        "Dumps that failed or timed out since start",
        stats.errors,
    );
    let p = stats.protections;
    counter(
        &mut r,
        "exporter_connections_evicted",
        "Idle connections closed to admit a new one at --web.max-connections",
        p.evicted,
    );
    counter(
        &mut r,
        "exporter_connections_refused",
        "Connections refused at --web.max-connections with every connection busy",
        p.refused,
    );
    counter(
        &mut r,
        "exporter_connections_timed_out",
        "Connections closed for idleness or a slow request head or TLS handshake",
        p.timed_out,
    );
    counter(
        &mut r,
        "exporter_auth_throttled",
        "Requests answered 429: too many password checks waiting",
        p.auth_throttled,
    );
    let build = Family::<BuildLabels, Gauge>::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION").to_string(),
            netns: status.netns.name.clone(),
        })
        .set(1);
    r.register(
        "build_info",
        "twscope version and the network namespace it reads",
        build,
    );
    r
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
            FindingLabels {
                id: "port-range-narrow".into(),
                severity: "critical".into()
            }
        );
        for id in FindingId::ALL {
            assert_eq!(finding_labels(&finding(id, Level::Info)).id, id.as_str());
        }
    }
}
