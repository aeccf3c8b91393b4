//! The ephemeral range itself: too narrow, eaten by reserved ports, or holding
//! listeners (kubernetes#138272: NodePorts inside the range).

use serde_json::json;

use super::{evidence, remedies, round, Check, Finding, Group, Level};
use crate::capacity::Severity;
use crate::plan::WIDEST_RANGE;
use crate::status::{endpoint, Status};
use crate::text::thousands;

/// The kernel's default range, 32768–60999.
const DEFAULT_RANGE_SIZE: u32 = 28_232;

/// `port-range-narrow`, `reserved-ports`, `listeners-in-range`.
pub struct PortRange;

impl Check for PortRange {
    fn ids(&self) -> &'static [&'static str] {
        &["port-range-narrow", "reserved-ports", "listeners-in-range"]
    }

    fn run(&self, status: &Status) -> Vec<Finding> {
        let mut findings = Vec::new();
        findings.extend(narrow(status));
        findings.extend(reserved(status));
        findings.extend(listeners(status));
        findings
    }
}

fn wide_range() -> Vec<(&'static str, String)> {
    vec![("net.ipv4.ip_local_port_range", format!("{} {}", WIDEST_RANGE.0, WIDEST_RANGE.1))]
}

fn narrow(status: &Status) -> Option<Finding> {
    let e = &status.ephemeral;
    let widest = u32::from(WIDEST_RANGE.1 - WIDEST_RANGE.0) + 1;
    let pressure = status.destinations.iter().any(|d| d.severity >= Severity::Warning);
    let level = if e.size < DEFAULT_RANGE_SIZE {
        Level::Warning
    } else if e.size < widest && pressure {
        Level::Info
    } else {
        return None;
    };
    Some(Finding {
        id: "port-range-narrow",
        severity: level,
        group: Group::System,
        title: format!("ephemeral range {}–{} holds {} ports; {}–{} would hold {}", e.low, e.high,
            thousands(u64::from(e.size)), WIDEST_RANGE.0, WIDEST_RANGE.1, thousands(u64::from(widest))),
        evidence: evidence([
            ("low", json!(e.low)),
            ("high", json!(e.high)),
            ("size", json!(e.size)),
            ("kernel_default_size", json!(DEFAULT_RANGE_SIZE)),
        ]),
        explanation: format!(
            "Each destination gets at most this many source ports per source address, so it sustains at most \
             {:.0} new connections/s (ports / 60 s of TIME_WAIT){}. Widening the range raises the ceiling \
             {:.1}×; reserve any listening port that then falls inside it.",
            f64::from(e.available) / 60.0,
            if e.size < DEFAULT_RANGE_SIZE { ", and it is narrower than the kernel's own default" } else { "" },
            f64::from(widest) / f64::from(e.size.max(1))
        ),
        remedies: remedies::sysctls(&wide_range()),
    })
}

fn reserved(status: &Status) -> Option<Finding> {
    let e = &status.ephemeral;
    let share = f64::from(e.reserved) / f64::from(e.size.max(1));
    let level = match share {
        s if s >= 0.10 => Level::Warning,
        s if s >= 0.01 => Level::Info,
        _ => return None,
    };
    Some(Finding {
        id: "reserved-ports",
        severity: level,
        group: Group::System,
        title: format!(
            "{} reserved ports ({:.0}% of the range) are unavailable to connect(): {}",
            thousands(u64::from(e.reserved)),
            share * 100.0,
            status.settings.reserved_ports
        ),
        evidence: evidence([
            ("reserved_in_range", json!(e.reserved)),
            ("range_size", json!(e.size)),
            ("share", round(share, 4)),
            ("ip_local_reserved_ports", json!(status.settings.reserved_ports.to_string())),
        ]),
        explanation: "Ports in net.ipv4.ip_local_reserved_ports are skipped by connect() and bind(0), so they come \
             off every destination's budget. Reserve only ports a service really listens on, or widen the range \
             to make up for them."
            .to_string(),
        remedies: remedies::sysctls(&wide_range()),
    })
}

fn listeners(status: &Status) -> Vec<Finding> {
    let settings = &status.settings;
    let mut inside: Vec<_> =
        status.listeners.iter().filter(|l| settings.in_range(l.port) && !settings.reserved_ports.contains(l.port)).collect();
    inside.sort_by_key(|l| l.port);
    inside
        .into_iter()
        .map(|l| {
            let mut reserved = settings.reserved_ports.clone();
            reserved.insert(l.port);
            let name = endpoint(&l.addr, l.port);
            Finding {
                id: "listeners-in-range",
                severity: Level::Warning,
                group: Group::System,
                title: format!("listener {name} sits inside the ephemeral range {}–{}", settings.port_range_low, settings.port_range_high),
                evidence: evidence([("listener", json!(name)), ("port", json!(l.port))]),
                explanation: format!(
                    "connect() skips port {} while it is bound, so it is one port fewer for every destination; worse, \
                     when the service restarts, an outbound connection may already hold the port and its bind() \
                     fails with EADDRINUSE (Kubernetes NodePorts, kubernetes#138272). Reserve it.",
                    l.port
                ),
                remedies: remedies::sysctls(&[("net.ipv4.ip_local_reserved_ports", reserved.to_string())]),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::kernel::PortRanges;

    #[test]
    fn a_narrow_range_is_a_warning_a_default_one_only_under_pressure() {
        let mut s = settings();
        s.port_range_low = 40000;
        s.port_range_high = 40999;
        let f = narrow(&Host::default().status(s)).unwrap();
        assert_eq!(f.severity, Level::Warning);
        assert!(f.title.contains("holds 1,000 ports"), "{}", f.title);
        assert_eq!(f.remedies[0].text, "sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"\n");
        assert!(narrow(&Host::default().status(settings())).is_none());
        let mut s = settings();
        s.tcp_tw_reuse = 0;
        let busy = Host::default().outbound("198.18.0.1", "198.18.0.9", 80, 20_000, 60, 0);
        assert_eq!(narrow(&busy.status(s)).unwrap().severity, Level::Info);
    }

    #[test]
    fn reserved_ports_count_only_inside_the_range() {
        let mut s = settings();
        s.reserved_ports = PortRanges::parse("8080,30000-33767").unwrap(); // 1,000 inside
        let f = reserved(&Host::default().status(s.clone())).unwrap();
        assert_eq!(f.severity, Level::Info);
        assert_eq!(f.evidence["reserved_in_range"], 1000);
        s.reserved_ports = PortRanges::parse("32768-40000").unwrap();
        assert_eq!(reserved(&Host::default().status(s.clone())).unwrap().severity, Level::Warning);
        s.reserved_ports = PortRanges::parse("8080,9100").unwrap();
        assert!(reserved(&Host::default().status(s)).is_none());
    }

    #[test]
    fn each_listener_inside_the_range_is_named_with_its_fix() {
        let mut s = settings();
        s.reserved_ports = PortRanges::parse("40000").unwrap();
        let host = Host::default()
            .listener("0.0.0.0", 8080) // outside
            .listener("0.0.0.0", 40000) // inside, reserved
            .listener("0.0.0.0", 31000) // outside
            .listener("::", 45678); // inside
        let f = listeners(&host.status(s));
        assert_eq!(f.len(), 1);
        assert!(f[0].title.starts_with("listener [::]:45678"), "{}", f[0].title);
        assert_eq!(f[0].remedies[0].text, "sysctl -w net.ipv4.ip_local_reserved_ports=\"40000,45678\"\n");
    }
}
