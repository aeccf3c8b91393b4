//! Kernel tables that cap connections besides the port range: the TIME_WAIT
//! bucket table and netfilter conntrack.

use serde_json::json;

use super::{evidence, remedies, round, Check, Finding, FindingId, Group, Level};
use crate::status::Status;
use crate::text::thousands;

/// The level of a table filled to `share`: critical from 95%, warning from
/// 80%, nothing below.
pub(crate) fn fill_level(share: f64) -> Option<Level> {
    match share {
        s if s >= 0.95 => Some(Level::Critical),
        s if s >= 0.80 => Some(Level::Warning),
        _ => None,
    }
}

/// A bigger table: twice the current use, at least twice the current size.
pub(crate) fn raised(used: u64, max: u64) -> u64 {
    (used * 2).max(max * 2).next_power_of_two()
}

/// `tw-buckets-overflow`.
pub struct TimeWaitBuckets;

impl Check for TimeWaitBuckets {
    fn ids(&self) -> &'static [FindingId] {
        &[FindingId::TwBucketsOverflow]
    }

    fn run(&self, status: &Status) -> Vec<Finding> {
        let max = status.settings.tcp_max_tw_buckets;
        let used = status.counters.sockstat_tw;
        let overflow = status.counters.tcp_time_wait_overflow;
        let share = used as f64 / max.max(1) as f64;
        let level = match (fill_level(share), overflow) {
            (Some(level), _) => level,
            (None, n) if n > 0 => Level::Warning,
            _ => return Vec::new(),
        };
        vec![Finding {
            id: FindingId::TwBucketsOverflow,
            severity: level,
            group: Group::Monitoring,
            title: if overflow > 0 {
                format!(
                    "{} TIME_WAIT sockets skipped at the tcp_max_tw_buckets cap (TCPTimeWaitOverflow)",
                    thousands(overflow)
                )
            } else {
                format!(
                    "{} of {} TIME_WAIT buckets used ({:.0}%)",
                    thousands(used),
                    thousands(max),
                    share * 100.0
                )
            },
            evidence: evidence([
                ("time_wait", json!(used)),
                ("tcp_max_tw_buckets", json!(max)),
                ("share", round(share, 4)),
                ("tcp_time_wait_overflow", json!(overflow)),
            ]),
            explanation: "Past net.ipv4.tcp_max_tw_buckets the kernel closes sockets without TIME_WAIT and logs \
                 'time wait bucket table overflow': ports come back at once, but late segments of the old \
                 connection can reach a new one. It hides port pressure rather than relieving it, and the counter \
                 only grows: watch its rate."
                .to_string(),
            remedies: remedies::sysctls(&[("net.ipv4.tcp_max_tw_buckets", raised(used, max).to_string())]),
        }]
    }
}

/// `conntrack-pressure`.
pub struct ConntrackPressure;

impl Check for ConntrackPressure {
    fn ids(&self) -> &'static [FindingId] {
        &[FindingId::ConntrackPressure]
    }

    fn run(&self, status: &Status) -> Vec<Finding> {
        let Some(ct) = status.conntrack else {
            return Vec::new();
        };
        let share = ct.count as f64 / ct.max.max(1) as f64;
        let Some(level) = fill_level(share) else {
            return Vec::new();
        };
        vec![Finding {
            id: FindingId::ConntrackPressure,
            severity: level,
            group: Group::Monitoring,
            title: format!(
                "conntrack table {:.0}% full ({} of {})",
                share * 100.0,
                thousands(ct.count),
                thousands(ct.max)
            ),
            evidence: evidence([
                ("count", json!(ct.count)),
                ("max", json!(ct.max)),
                ("share", round(share, 4)),
            ]),
            explanation: "Every tracked connection, TIME_WAIT ones included, takes a conntrack entry; when the \
                 table is full new connections are dropped ('nf_conntrack: table full, dropping packet') — an \
                 outage that looks like port exhaustion from outside."
                .to_string(),
            remedies: remedies::sysctls(&[("net.netfilter.nf_conntrack_max", raised(ct.count, ct.max).to_string())]),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::kernel::Conntrack;

    #[test]
    fn tw_buckets_near_the_cap_or_overflowed() {
        let mut s = settings();
        s.tcp_max_tw_buckets = 1000;
        let near = Host::default().outbound("198.18.0.1", "198.18.0.9", 80, 850, 60, 0);
        let f = TimeWaitBuckets.run(&near.status(s.clone()));
        assert_eq!(f[0].severity, Level::Warning);
        assert_eq!(
            f[0].remedies[0].text,
            "sysctl -w net.ipv4.tcp_max_tw_buckets=\"2048\"\n"
        );
        let mut overflowed = Host::default();
        overflowed.counters.tcp_time_wait_overflow = 12;
        let f = TimeWaitBuckets.run(&overflowed.status(s.clone()));
        assert!(f[0].title.starts_with("12 TIME_WAIT sockets skipped"), "{}", f[0].title);
        assert!(TimeWaitBuckets.run(&Host::default().status(s)).is_empty());
    }

    #[test]
    fn conntrack_only_where_loaded_and_full() {
        assert!(ConntrackPressure.run(&Host::default().status(settings())).is_empty());
        let mut host = Host {
            conntrack: Some(Conntrack { count: 970, max: 1000 }),
            ..Host::default()
        };
        let f = ConntrackPressure.run(&host.status(settings()));
        assert_eq!(f[0].severity, Level::Critical);
        host.conntrack = Some(Conntrack { count: 100, max: 1000 });
        assert!(ConntrackPressure.run(&host.status(settings())).is_empty());
    }
}
