//! Per-destination checks: port pressure from the capacity model, and the
//! TIME_WAIT checklist's "the pool is configured but bypassed".

use serde_json::json;

use super::{evidence, hold_s, remedies, reuse_would_apply, round, seconds, Check, Finding, FindingId, Group, Level};
use crate::capacity::Severity;
use crate::linux::WIDEST_PORT_RANGE;
use crate::status::{Destination, Outlook, Status};
use crate::text::{rate, thousands};

/// `destination-pressure`: a destination whose source ports are filling up.
pub struct DestinationPressure;

impl Check for DestinationPressure {
    fn ids(&self) -> &'static [FindingId] {
        &[FindingId::DestinationPressure]
    }

    fn run(&self, status: &Status) -> Vec<Finding> {
        status
            .destinations
            .iter()
            .filter(|d| d.severity >= Severity::Warning)
            .map(|d| pressure(d, status))
            .collect()
    }
}

fn pressure(d: &Destination, status: &Status) -> Finding {
    let name = d.endpoint();
    let outlook = match d.outlook {
        Outlook::Never => String::new(),
        other => format!("; {}", other.phrase()),
    };
    let mut system = vec![(
        "net.ipv4.ip_local_port_range",
        format!("{} {}", WIDEST_PORT_RANGE.0, WIDEST_PORT_RANGE.1),
    )];
    if !d.tw_reuse && reuse_would_apply(&status.settings) {
        system.push(("net.ipv4.tcp_tw_reuse", "1".to_string()));
    }
    let mut fixes = remedies::connection_reuse();
    fixes.extend(remedies::sysctls(&system));
    let hold = hold_s(status, d.tw_reuse);
    let held = if d.tw_reuse {
        format!(
            "for the {} reuse delay (tcp_tw_reuse), then connect() may take it over",
            seconds(hold)
        )
    } else {
        format!("for {} in TIME_WAIT", seconds(hold))
    };
    // While connect() fails, only the connections that got a port close:
    // the rate then undercounts what the application attempts.
    let measured = if d.exhausted() {
        " (connections that got a port and closed; while connect() fails the application attempts more)"
    } else {
        ""
    };
    Finding {
        id: FindingId::DestinationPressure,
        severity: Level::from_severity(d.severity),
        group: Group::Diagnosis,
        title: format!(
            "{name}: {:.0}% of its {} source ports taken{outlook}",
            d.utilization * 100.0,
            thousands(u64::from(d.available))
        ),
        evidence: evidence([
            ("destination", json!(name)),
            ("in_use", json!(d.in_use)),
            ("time_wait", json!(d.time_wait)),
            ("established", json!(d.established)),
            ("available", json!(d.available)),
            ("utilization", round(d.utilization, 4)),
            ("in_use_ratio", round(d.in_use_ratio, 4)),
            ("close_rate_per_s", round(d.close_rate_per_s, 1)),
            ("max_rate_per_s", round(d.max_rate_per_s, 1)),
            (
                "exhaustion_eta_s",
                json!(d.exhaustion_eta_s.map(|s| (s * 10.0).round() / 10.0)),
            ),
        ]),
        explanation: format!(
            "Every connect() to {name} needs a source port not already paired with it; each closed \
             connection keeps its port {held}. Closing {}/s{measured} against {}/s sustainable, so when the \
             budget is gone connect() fails with EADDRNOTAVAIL ('cannot assign requested address'). Reuse \
             connections first; a wider range or tw_reuse only raises the ceiling.",
            rate(d.close_rate_per_s),
            rate(d.max_rate_per_s)
        ),
        remedies: fixes,
    }
}

/// Closing at least this many connections a second to one destination while
/// almost none stay open is a pool bypass worth a warning.
const BYPASS_WARNING_RATE: f64 = 10.0;
/// Below this, churn is too slow to matter.
const BYPASS_INFO_RATE: f64 = 1.0;
/// TIME_WAIT per ESTABLISHED from which connections look single-use.
const BYPASS_RATIO: u64 = 10;

/// `pool-bypass-suspected`: many connections closed to a destination while few
/// stay open — the TIME_WAIT checklist's "the pool was configured correctly;
/// it just wasn't being used".
pub struct PoolBypass;

impl Check for PoolBypass {
    fn ids(&self) -> &'static [FindingId] {
        &[FindingId::PoolBypassSuspected]
    }

    fn run(&self, status: &Status) -> Vec<Finding> {
        status
            .destinations
            .iter()
            .filter(|d| {
                d.close_rate_per_s >= BYPASS_INFO_RATE
                    && d.time_wait >= 50
                    && d.time_wait >= BYPASS_RATIO * d.established.max(1)
            })
            .map(|d| {
                let name = d.endpoint();
                let level = if d.close_rate_per_s >= BYPASS_WARNING_RATE { Level::Warning } else { Level::Info };
                Finding {
                    id: FindingId::PoolBypassSuspected,
                    severity: level,
                    group: Group::Application,
                    title: format!(
                        "{name}: {}/s connections opened and closed, only {} kept open — a pool is bypassed or keep-alive is off",
                        rate(d.close_rate_per_s),
                        thousands(d.established)
                    ),
                    evidence: evidence([
                        ("destination", json!(name)),
                        ("time_wait", json!(d.time_wait)),
                        ("established", json!(d.established)),
                        ("close_rate_per_s", round(d.close_rate_per_s, 1)),
                        ("time_wait_per_established", round(d.time_wait as f64 / d.established.max(1) as f64, 1)),
                    ]),
                    explanation: format!(
                        "A working pool keeps a steady set of ESTABLISHED connections and reuses them, so TIME_WAIT \
                         stays small. Here {} connections to {name} closed in the last {} ({}/s now) against {} \
                         open: each use opens its own connection. Typical causes: a client or DataSource built per \
                         request, a pool too small for the concurrency (extra connections are opened and closed), \
                         idle connections closed at once (idle slots smaller than the pool), or HTTP responses not \
                         read to the end.",
                        thousands(d.time_wait),
                        seconds(hold_s(status, false)),
                        rate(d.close_rate_per_s),
                        thousands(d.established)
                    ),
                    remedies: remedies::connection_reuse(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{Language, RemedyKind};
    use super::*;

    #[test]
    fn pressure_follows_the_model() {
        // 24,000 TIME_WAIT at 400/s: 85% of 28,232 — critical, not on course.
        let host = Host::default().outbound("198.18.0.1", "198.18.0.100", 5432, 24_000, 60, 0);
        let mut s = settings();
        s.tcp_tw_reuse = 0;
        let findings = DestinationPressure.run(&host.status(s.clone()));
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!(f.severity, Level::Critical);
        assert!(
            f.title.starts_with("198.18.0.100:5432: 85% of its 28,232 source ports"),
            "{}",
            f.title
        );
        assert_eq!(f.evidence["in_use"], 24_000);
        assert_eq!(f.evidence["close_rate_per_s"], 400.0);
        assert!(f
            .remedies
            .iter()
            .any(|r| r.kind == RemedyKind::Snippet { language: Language::Go }));
        assert!(f.remedies.iter().any(|r| r.kind == RemedyKind::Kubernetes));
        assert!(
            f.explanation.contains("keeps its port for 60 s in TIME_WAIT"),
            "{}",
            f.explanation
        );
        assert!(f.remedies.iter().any(|r| r.text.contains("tcp_tw_reuse")));
        // A light destination is not a finding.
        let light = Host::default().outbound("198.18.0.1", "198.18.0.100", 5432, 1000, 60, 0);
        assert!(DestinationPressure.run(&light.status(s.clone())).is_empty());
        // tcp_tw_reuse=1 turns the same host ok: only young TIME_WAIT blocks.
        s.tcp_tw_reuse = 1;
        assert!(DestinationPressure.run(&host.status(s)).is_empty());
    }

    #[test]
    fn bypass_needs_churn_with_few_open_connections() {
        // 1,200 TIME_WAIT over the minute (20/s), 3 ESTABLISHED: bypassed.
        let bypassed = Host::default().outbound("198.18.0.1", "198.18.0.100", 5432, 1200, 60, 3);
        let f = PoolBypass.run(&bypassed.status(settings()));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity, Level::Warning);
        assert_eq!(f[0].evidence["time_wait_per_established"], 400.0);
        assert_eq!(f[0].remedies.len(), 5);
        // The same churn beside a big pool of open connections is a pool that
        // recycles, not one that is bypassed.
        let pooled = Host::default().outbound("198.18.0.1", "198.18.0.100", 5432, 1200, 60, 200);
        assert!(PoolBypass.run(&pooled.status(settings())).is_empty());
        // A trickle (2/s) is only worth an info.
        let trickle = Host::default().outbound("198.18.0.1", "198.18.0.100", 5432, 120, 60, 0);
        assert_eq!(PoolBypass.run(&trickle.status(settings()))[0].severity, Level::Info);
    }

    #[test]
    fn an_exhausted_destination_says_what_its_rate_counts() {
        // 28,232 TIME_WAIT younger than 60 s: every port taken.
        let host = Host::default().outbound("198.18.0.1", "198.18.0.100", 5432, 28_232, 60, 0);
        let mut s = settings();
        s.tcp_tw_reuse = 0;
        let f = &DestinationPressure.run(&host.status(s))[0];
        assert!(
            f.title
                .contains("100% of its 28,232 source ports taken; ports exhausted now"),
            "{}",
            f.title
        );
        assert!(
            f.explanation
                .contains("while connect() fails the application attempts more"),
            "{}",
            f.explanation
        );
    }
}
