//! The ephemeral range itself: too narrow, eaten by reserved ports, or holding
//! listeners (kubernetes#138272: NodePorts inside the range).

use std::net::{IpAddr, Ipv4Addr};

use serde_json::json;

use super::{evidence, hold_s, remedies, round, seconds, Check, Finding, FindingId, Group, Level};
use crate::capacity::{max_sustainable_rate, PortBudget, Severity};
use crate::linux::{listener_takes_a_port, range_size, DEFAULT_PORT_RANGE, WIDEST_PORT_RANGE};
use crate::status::{endpoint, Status};
use crate::text::{rate, thousands};

/// `port-range-narrow`, `reserved-ports`, `listeners-in-range`.
pub struct PortRange;

impl Check for PortRange {
    fn ids(&self) -> &'static [FindingId] {
        &[
            FindingId::PortRangeNarrow,
            FindingId::ReservedPorts,
            FindingId::ListenersInRange,
        ]
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
    vec![(
        "net.ipv4.ip_local_port_range",
        format!("{} {}", WIDEST_PORT_RANGE.0, WIDEST_PORT_RANGE.1),
    )]
}

/// The ports `connect()` would have in `range` with this namespace's
/// reservations and listeners: the model's budget for another range.
fn budget_in(status: &Status, range: (u16, u16)) -> PortBudget {
    let reserved = &status.settings.reserved_ports;
    let mut listeners: Vec<u16> = status
        .listeners
        .iter()
        .map(|l| l.port)
        .filter(|&p| listener_takes_a_port(p, range, |p| reserved.contains(p)))
        .collect();
    listeners.sort_unstable();
    listeners.dedup();
    PortBudget {
        range_size: range_size(range),
        reserved: reserved.count_within(range.0, range.1),
        listeners: listeners.len() as u32,
    }
}

fn narrow(status: &Status) -> Option<Finding> {
    let e = &status.ephemeral;
    let s = &status.settings;
    let default_size = range_size(DEFAULT_PORT_RANGE);
    let widest = range_size(WIDEST_PORT_RANGE);
    let pressure = status.destinations.iter().any(|d| d.severity >= Severity::Warning);
    let level = if e.size < default_size {
        Level::Warning
    } else if e.size < widest && pressure {
        Level::Info
    } else {
        return None;
    };
    // The ceiling, as the capacity model computes it: available ports over
    // the hold time, which tcp_tw_reuse shortens to the reuse delay for the
    // destinations it applies to (all with 1, loopback ones with 2, none
    // without timestamps).
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (remote_reuse, loopback_reuse) = (s.tw_reuse_applies(any, any), s.tw_reuse_applies(lo, lo));
    let ceiling = |reuse| max_sustainable_rate(e.available, hold_s(status, reuse));
    let sustains = if remote_reuse {
        format!(
            "at most {} new connections/s: with tcp_tw_reuse={} a closed connection's port is taken over after the \
             {} reuse delay ({}/s if each waited out {} of TIME_WAIT)",
            rate(ceiling(true)),
            s.tcp_tw_reuse,
            seconds(hold_s(status, true)),
            rate(ceiling(false)),
            seconds(hold_s(status, false))
        )
    } else if loopback_reuse {
        format!(
            "at most {} new connections/s to a remote destination (ports / {} of TIME_WAIT), and {}/s to a loopback \
             one, where tcp_tw_reuse={} takes a port over after the {} reuse delay",
            rate(ceiling(false)),
            seconds(hold_s(status, false)),
            rate(ceiling(true)),
            s.tcp_tw_reuse,
            seconds(hold_s(status, true))
        )
    } else {
        format!(
            "at most {} new connections/s (ports / {} of TIME_WAIT)",
            rate(ceiling(false)),
            seconds(hold_s(status, false))
        )
    };
    let wide = budget_in(status, WIDEST_PORT_RANGE).available();
    let gain = if e.available == 0 {
        format!("from nothing to {} ports", thousands(u64::from(wide)))
    } else {
        format!("{:.1}×", f64::from(wide) / f64::from(e.available))
    };
    Some(Finding {
        id: FindingId::PortRangeNarrow,
        severity: level,
        group: Group::System,
        title: format!(
            "ephemeral range {}–{} holds {} ports; {}–{} would hold {}",
            e.low,
            e.high,
            thousands(u64::from(e.size)),
            WIDEST_PORT_RANGE.0,
            WIDEST_PORT_RANGE.1,
            thousands(u64::from(widest))
        ),
        evidence: evidence([
            ("low", json!(e.low)),
            ("high", json!(e.high)),
            ("size", json!(e.size)),
            ("kernel_default_size", json!(default_size)),
            ("available", json!(e.available)),
            ("tw_reuse_remote", json!(remote_reuse)),
            ("hold_s", round(hold_s(status, remote_reuse), 3)),
            ("max_rate_per_s", round(ceiling(remote_reuse), 1)),
            ("widest_available", json!(wide)),
        ]),
        explanation: format!(
            "Each destination gets {} source ports per source address here, so it sustains {}{}. Widening the \
             range to {}–{} leaves {} ports and raises that ceiling {}; reserve any listening port that then \
             falls inside it.",
            thousands(u64::from(e.available)),
            sustains,
            if e.size < default_size {
                format!(
                    ", and the range is narrower than the kernel's own default ({}–{}, {} ports)",
                    DEFAULT_PORT_RANGE.0,
                    DEFAULT_PORT_RANGE.1,
                    thousands(u64::from(default_size))
                )
            } else {
                String::new()
            },
            WIDEST_PORT_RANGE.0,
            WIDEST_PORT_RANGE.1,
            thousands(u64::from(wide)),
            gain
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
        id: FindingId::ReservedPorts,
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
            (
                "ip_local_reserved_ports",
                json!(status.settings.reserved_ports.to_string()),
            ),
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
    // The model's own list of listening ports that take a port out of the budget.
    let mut inside: Vec<_> = status
        .listeners
        .iter()
        .filter(|l| status.ephemeral.listeners_in_range.contains(&l.port))
        .collect();
    inside.sort_by_key(|l| l.port);
    inside
        .into_iter()
        .map(|l| {
            let mut reserved = settings.reserved_ports.clone();
            reserved.insert(l.port);
            let name = endpoint(&l.addr, l.port);
            Finding {
                id: FindingId::ListenersInRange,
                severity: Level::Warning,
                group: Group::System,
                title: format!(
                    "listener {name} sits inside the ephemeral range {}–{}",
                    settings.port_range_low, settings.port_range_high
                ),
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
        assert_eq!(
            f.remedies[0].text,
            "sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"\n"
        );
        assert!(narrow(&Host::default().status(settings())).is_none());
        let mut s = settings();
        s.tcp_tw_reuse = 0;
        let busy = Host::default().outbound("198.18.0.1", "198.18.0.9", 80, 20_000, 60, 0);
        assert_eq!(narrow(&busy.status(s)).unwrap().severity, Level::Info);
    }

    fn narrow_with_reuse(tcp_tw_reuse: u8, tcp_timestamps: u8) -> Finding {
        let mut s = settings();
        s.port_range_low = 40000;
        s.port_range_high = 40999;
        s.tcp_tw_reuse = tcp_tw_reuse;
        s.tcp_timestamps = tcp_timestamps;
        narrow(&Host::default().status(s)).unwrap()
    }

    #[test]
    fn the_ceiling_in_prose_is_the_models_without_tw_reuse() {
        let f = narrow_with_reuse(0, 1);
        // 1,000 ports held 60 s each: 16.7/s, as max_sustainable_rate says.
        assert!(f.explanation.contains("gets 1,000 source ports"), "{}", f.explanation);
        assert!(
            f.explanation
                .contains("at most 17 new connections/s (ports / 60 s of TIME_WAIT)"),
            "{}",
            f.explanation
        );
        assert!(
            f.explanation
                .contains("narrower than the kernel's own default (32768–60999, 28,232 ports)"),
            "{}",
            f.explanation
        );
        // 1024–65535 leaves 64,512 ports: 64.5× the ceiling.
        assert!(
            f.explanation
                .contains("leaves 64,512 ports and raises that ceiling 64.5×"),
            "{}",
            f.explanation
        );
        assert_eq!(
            (f.evidence["max_rate_per_s"].as_f64(), f.evidence["hold_s"].as_f64()),
            (Some(16.7), Some(60.0))
        );
        assert_eq!(f.evidence["tw_reuse_remote"], false);
        // Timestamps off: tw_reuse=1 does nothing, and the prose says 60 s.
        assert_eq!(narrow_with_reuse(1, 0).explanation, f.explanation);
    }

    #[test]
    fn the_ceiling_in_prose_follows_tw_reuse() {
        // tcp_tw_reuse=1: a port comes back after the 1 s reuse delay, so
        // 1,000 ports sustain 1,000/s, not 17/s.
        let f = narrow_with_reuse(1, 1);
        assert!(
            f.explanation.contains(
                "at most 1,000 new connections/s: with tcp_tw_reuse=1 a closed connection's port is taken over after \
                 the 1 s reuse delay (17/s if each waited out 60 s of TIME_WAIT)"
            ),
            "{}",
            f.explanation
        );
        assert_eq!(
            (f.evidence["max_rate_per_s"].as_f64(), f.evidence["hold_s"].as_f64()),
            (Some(1000.0), Some(1.0))
        );
        assert_eq!(f.evidence["tw_reuse_remote"], true);
        // A shorter reuse delay (Linux 6.14+) is quoted as it is.
        let mut s = settings();
        s.port_range_low = 40000;
        s.port_range_high = 40999;
        s.tcp_tw_reuse = 1;
        s.tcp_tw_reuse_delay_ms = Some(250);
        let f = narrow(&Host::default().status(s)).unwrap();
        assert!(
            f.explanation.contains("at most 4,000 new connections/s") && f.explanation.contains("250 ms reuse delay"),
            "{}",
            f.explanation
        );
        // tcp_tw_reuse=2: remote destinations wait out TIME_WAIT, loopback ones do not.
        let f = narrow_with_reuse(2, 1);
        assert!(
            f.explanation.contains("at most 17 new connections/s to a remote destination (ports / 60 s of TIME_WAIT), and 1,000/s to a loopback one"),
            "{}",
            f.explanation
        );
    }

    #[test]
    fn the_ceiling_in_prose_uses_the_kernels_real_time_wait_lifetime() {
        // HZ=250: the wheel rounds the 60 s timer up, 61.024 s on average;
        // the prose quotes what the model holds a port for.
        let mut s = settings();
        s.port_range_low = 40000;
        s.port_range_high = 40999;
        s.tcp_tw_reuse = 0;
        let host = Host {
            time_wait: Some(crate::linux::TimeWaitLifetime::for_hz(250)),
            ..Host::default()
        };
        let f = narrow(&host.status(s)).unwrap();
        assert!(
            f.explanation
                .contains("at most 16 new connections/s (ports / 61.0 s of TIME_WAIT)"),
            "{}",
            f.explanation
        );
        assert_eq!(f.evidence["hold_s"].as_f64(), Some(61.024));
    }

    #[test]
    fn reserved_ports_count_only_inside_the_range() {
        let mut s = settings();
        s.reserved_ports = PortRanges::parse("8080,30000-33767").unwrap(); // 1,000 inside
        let f = reserved(&Host::default().status(s.clone())).unwrap();
        assert_eq!(f.severity, Level::Info);
        assert_eq!(f.evidence["reserved_in_range"], 1000);
        s.reserved_ports = PortRanges::parse("32768-40000").unwrap();
        assert_eq!(
            reserved(&Host::default().status(s.clone())).unwrap().severity,
            Level::Warning
        );
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
        assert_eq!(
            f[0].remedies[0].text,
            "sysctl -w net.ipv4.ip_local_reserved_ports=\"40000,45678\"\n"
        );
    }
}
