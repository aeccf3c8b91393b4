//! The TIME_WAIT sysctls: tw_reuse off or loopback-only under pressure,
//! timestamps off (which disables tw_reuse), tw_recycle (breaks NAT), and the
//! common belief that tcp_fin_timeout shortens TIME_WAIT.

use serde_json::json;

use super::{endpoints, evidence, hold_s, named, remedies, seconds, Check, Finding, FindingId, Group, Level};
use crate::capacity::{Severity, TIME_WAIT_SECS};
use crate::status::{Destination, Status};

/// The kernel's default `tcp_fin_timeout` (`TCP_FIN_TIMEOUT`, 60 s): below it,
/// someone lowered it, usually hoping to shorten TIME_WAIT.
const DEFAULT_FIN_TIMEOUT_S: u32 = 60;

/// `tw-reuse-off`, `tw-reuse-loopback-only`, `timestamps-off`,
/// `tw-recycle-present`, `fin-timeout-misconception`.
pub struct TimeWaitSettings;

impl Check for TimeWaitSettings {
    fn ids(&self) -> &'static [FindingId] {
        &[
            FindingId::TwReuseOff,
            FindingId::TwReuseLoopbackOnly,
            FindingId::TimestampsOff,
            FindingId::TwRecyclePresent,
            FindingId::FinTimeoutMisconception,
        ]
    }

    fn run(&self, status: &Status) -> Vec<Finding> {
        let s = &status.settings;
        let pressured: Vec<&Destination> = status
            .destinations
            .iter()
            .filter(|d| d.severity >= Severity::Warning)
            .collect();
        let mut findings = Vec::new();
        let reuse_fix = || {
            let mut settings = vec![("net.ipv4.tcp_tw_reuse", "1".to_string())];
            if s.tcp_timestamps == 0 {
                settings.insert(0, ("net.ipv4.tcp_timestamps", "1".to_string()));
            }
            remedies::sysctls(&settings)
        };
        // What tw_reuse changes, as the model counts it.
        let (time_wait, delay) = (hold_s(status, false), hold_s(status, true));
        if s.tcp_tw_reuse == 0 && !pressured.is_empty() {
            findings.push(Finding {
                id: FindingId::TwReuseOff,
                severity: Level::Warning,
                group: Group::System,
                title: match pressured.len() {
                    1 => format!("tcp_tw_reuse=0 while {} is short of source ports", named(&pressured)),
                    n => format!(
                        "tcp_tw_reuse=0 while {n} destinations are short of source ports: {}",
                        named(&pressured)
                    ),
                },
                evidence: evidence([
                    ("tcp_tw_reuse", json!(0)),
                    ("destinations_under_pressure", json!(pressured.len())),
                    ("destinations", json!(endpoints(&pressured))),
                ]),
                explanation: format!(
                    "With tcp_tw_reuse=1, connect() may take over a TIME_WAIT port to the same destination once its \
                     last timestamp is older than the reuse delay ({}), instead of waiting {}: the ceiling rises \
                     about {:.0}×. It is safe for client connections (timestamps protect against old duplicates) \
                     and affects only outbound connects. It raises the ceiling; fixing the churn is still the real \
                     fix.",
                    seconds(delay),
                    seconds(time_wait),
                    time_wait / delay
                ),
                remedies: reuse_fix(),
            });
        }
        let remote: Vec<&Destination> = pressured
            .iter()
            .copied()
            .filter(|d| d.addr.parse::<std::net::IpAddr>().is_ok_and(|a| !a.is_loopback()) && !d.tw_reuse)
            .collect();
        if s.tcp_tw_reuse == 2 && !remote.is_empty() {
            findings.push(Finding {
                id: FindingId::TwReuseLoopbackOnly,
                severity: Level::Warning,
                group: Group::System,
                title: match remote.len() {
                    1 => format!(
                        "tcp_tw_reuse=2 reuses TIME_WAIT on loopback only, but {} is a remote destination under pressure",
                        named(&remote)
                    ),
                    n => format!(
                        "tcp_tw_reuse=2 reuses TIME_WAIT on loopback only, but {n} remote destinations are under pressure: {}",
                        named(&remote)
                    ),
                },
                evidence: evidence([
                    ("tcp_tw_reuse", json!(2)),
                    ("remote_destinations_under_pressure", json!(remote.len())),
                    ("destinations", json!(endpoints(&remote))),
                ]),
                explanation: format!(
                    "The default, 2, lets connect() take over TIME_WAIT ports only for loopback traffic. Outbound \
                     connections to other hosts wait the full {} per port. Set 1 to cover them.",
                    seconds(time_wait)
                ),
                remedies: reuse_fix(),
            });
        }
        if s.tcp_timestamps == 0 {
            let blocks = s.tcp_tw_reuse != 0 || !pressured.is_empty();
            findings.push(Finding {
                id: FindingId::TimestampsOff,
                severity: if blocks { Level::Warning } else { Level::Info },
                group: Group::System,
                title: "tcp_timestamps=0 disables tcp_tw_reuse".to_string(),
                evidence: evidence([("tcp_timestamps", json!(0)), ("tcp_tw_reuse", json!(s.tcp_tw_reuse))]),
                explanation: "tcp_tw_reuse only takes over a TIME_WAIT port when the old connection carried TCP \
                     timestamps (they tell old segments from new ones). With timestamps off, tw_reuse does \
                     nothing, whatever its value."
                    .to_string(),
                remedies: remedies::sysctls(&[("net.ipv4.tcp_timestamps", "1".to_string())]),
            });
        }
        if let Some(recycle) = s.tcp_tw_recycle {
            findings.push(Finding {
                id: FindingId::TwRecyclePresent,
                severity: if recycle == 1 { Level::Critical } else { Level::Info },
                group: Group::System,
                title: if recycle == 1 {
                    "tcp_tw_recycle=1: clients behind NAT get dropped".to_string()
                } else {
                    "tcp_tw_recycle exists on this kernel (< 4.12): keep it 0".to_string()
                },
                evidence: evidence([("tcp_tw_recycle", json!(recycle))]),
                explanation: "tcp_tw_recycle drops SYNs whose timestamps are older than the last one seen from the \
                     same address. Clients behind one NAT address have unrelated timestamp clocks, so their \
                     connections fail at random. It was removed in Linux 4.12; never enable it — use \
                     tcp_tw_reuse for outbound connections instead."
                    .to_string(),
                remedies: remedies::sysctls(&[("net.ipv4.tcp_tw_recycle", "0".to_string())]),
            });
        }
        if s.tcp_fin_timeout < DEFAULT_FIN_TIMEOUT_S {
            findings.push(Finding {
                id: FindingId::FinTimeoutMisconception,
                severity: Level::Info,
                group: Group::System,
                title: format!("tcp_fin_timeout={} s does not shorten TIME_WAIT", s.tcp_fin_timeout),
                evidence: evidence([
                    ("tcp_fin_timeout", json!(s.tcp_fin_timeout)),
                    ("time_wait_s", json!(TIME_WAIT_SECS)),
                ]),
                explanation: format!(
                    "tcp_fin_timeout limits how long an orphaned socket stays in FIN_WAIT2. TIME_WAIT is fixed at \
                     {} (TCP_TIMEWAIT_LEN{}) and no sysctl changes it: lowering fin_timeout frees no ephemeral \
                     port. The levers are connection reuse, tcp_tw_reuse and the port range.",
                    seconds(TIME_WAIT_SECS),
                    if time_wait > TIME_WAIT_SECS {
                        format!(
                            "; {} on average here, as the kernel's timer rounds it up",
                            seconds(time_wait)
                        )
                    } else {
                        String::new()
                    }
                ),
                remedies: Vec::new(),
            });
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use FindingId::*;

    fn busy(dst: &str) -> Host {
        Host::default().outbound("198.18.0.1", dst, 5432, 24_000, 60, 0)
    }

    #[test]
    fn tw_reuse_findings_need_pressure_and_the_right_destination() {
        let mut s = settings();
        s.tcp_tw_reuse = 0;
        assert_eq!(
            ids(&busy("198.18.0.100").status(s.clone())),
            [DestinationPressure, PoolBypassSuspected, PortRangeNarrow, TwReuseOff]
        );
        let f = &TimeWaitSettings.run(&busy("198.18.0.100").status(s.clone()))[0];
        assert_eq!(f.remedies[0].text, "sysctl -w net.ipv4.tcp_tw_reuse=\"1\"\n");
        assert_eq!(
            f.title,
            "tcp_tw_reuse=0 while 198.18.0.100:5432 is short of source ports"
        );
        assert_eq!(f.evidence["destinations"], serde_json::json!(["198.18.0.100:5432"]));
        assert!(
            f.explanation
                .contains("older than the reuse delay (1 s), instead of waiting 60 s: the ceiling rises about 60×"),
            "{}",
            f.explanation
        );
        // No pressure, no finding.
        assert!(TimeWaitSettings.run(&Host::default().status(s.clone())).is_empty());
        // 2 = loopback only: a finding for a remote destination…
        s.tcp_tw_reuse = 2;
        let found = TimeWaitSettings.run(&busy("198.18.0.100").status(s.clone()));
        assert_eq!(found.iter().map(|f| f.id).collect::<Vec<_>>(), [TwReuseLoopbackOnly]);
        // …none for a loopback one, where 2 already applies.
        assert!(TimeWaitSettings.run(&busy("127.0.0.1").status(s.clone())).is_empty());
    }

    #[test]
    fn tw_reuse_off_names_every_destination_its_evidence_counts() {
        let mut s = settings();
        s.tcp_tw_reuse = 0;
        let two = busy("198.18.0.100").outbound("198.18.0.1", "198.18.0.101", 6379, 23_000, 60, 0);
        let found = TimeWaitSettings.run(&two.status(s.clone()));
        let f = found.iter().find(|f| f.id == TwReuseOff).unwrap();
        assert_eq!(f.evidence["destinations_under_pressure"], 2);
        assert_eq!(
            f.evidence["destinations"],
            serde_json::json!(["198.18.0.100:5432", "198.18.0.101:6379"])
        );
        assert_eq!(
            f.title,
            "tcp_tw_reuse=0 while 2 destinations are short of source ports: 198.18.0.100:5432 and 198.18.0.101:6379"
        );
        // Every destination the evidence lists is in the title.
        for d in f.evidence["destinations"].as_array().unwrap() {
            assert!(f.title.contains(d.as_str().unwrap()), "{d} missing from {}", f.title);
        }
        // Many: the title counts them and names the first few; the evidence lists all.
        let mut host = two;
        for i in 2..6 {
            host = host.outbound(
                "198.18.0.1",
                &format!("198.18.0.{}", 100 + i),
                80,
                22_000 - i * 100,
                60,
                0,
            );
        }
        let found = TimeWaitSettings.run(&host.status(s.clone()));
        let f = found.iter().find(|f| f.id == TwReuseOff).unwrap();
        assert_eq!(f.evidence["destinations_under_pressure"], 6);
        assert_eq!(f.evidence["destinations"].as_array().unwrap().len(), 6);
        assert!(
            f.title
                .starts_with("tcp_tw_reuse=0 while 6 destinations are short of source ports: 198.18.0.100:5432, "),
            "{}",
            f.title
        );
        assert!(f.title.ends_with(" and 3 more"), "{}", f.title);
        // tw_reuse=2 says the same of remote destinations.
        s.tcp_tw_reuse = 2;
        let two = busy("198.18.0.100")
            .outbound("198.18.0.1", "198.18.0.101", 6379, 23_000, 60, 0)
            .outbound("127.0.0.1", "127.0.0.1", 80, 24_000, 60, 0);
        let found = TimeWaitSettings.run(&two.status(s));
        let f = found.iter().find(|f| f.id == TwReuseLoopbackOnly).unwrap();
        assert_eq!(f.evidence["remote_destinations_under_pressure"], 2);
        assert_eq!(
            f.evidence["destinations"],
            serde_json::json!(["198.18.0.100:5432", "198.18.0.101:6379"])
        );
        assert!(
            f.title
                .ends_with("but 2 remote destinations are under pressure: 198.18.0.100:5432 and 198.18.0.101:6379"),
            "{}",
            f.title
        );
    }

    #[test]
    fn timestamps_off_blocks_reuse() {
        let mut s = settings();
        s.tcp_timestamps = 0;
        s.tcp_tw_reuse = 1;
        let f = TimeWaitSettings.run(&Host::default().status(s.clone()));
        assert_eq!(f[0].id, TimestampsOff);
        assert_eq!(f[0].severity, Level::Warning);
        // Under pressure with reuse off too, the tw_reuse fix turns timestamps on first.
        s.tcp_tw_reuse = 0;
        let f = TimeWaitSettings.run(&busy("198.18.0.100").status(s));
        let reuse = f.iter().find(|f| f.id == TwReuseOff).unwrap();
        assert!(
            reuse.remedies[0]
                .text
                .starts_with("sysctl -w net.ipv4.tcp_timestamps=\"1\"\n"),
            "{}",
            reuse.remedies[0].text
        );
    }

    #[test]
    fn old_kernels_with_recycle_and_without_reuse_delay() {
        let mut s = settings();
        s.tcp_tw_reuse_delay_ms = None; // before 6.14: the 1 s delay is built in
        s.tcp_tw_recycle = Some(1);
        let f = TimeWaitSettings.run(&Host::default().status(s.clone()));
        assert_eq!((f[0].id, f[0].severity), (TwRecyclePresent, Level::Critical));
        assert!(f[0].explanation.contains("NAT"));
        s.tcp_tw_recycle = Some(0);
        assert_eq!(
            TimeWaitSettings.run(&Host::default().status(s.clone()))[0].severity,
            Level::Info
        );
        // tw_reuse=1 on an old kernel still relieves pressure (1 s delay).
        s.tcp_tw_recycle = None;
        s.tcp_tw_reuse = 1;
        assert_eq!(ids(&busy("198.18.0.100").status(s)), [PoolBypassSuspected]);
    }

    #[test]
    fn fin_timeout_is_explained_not_blamed() {
        let mut s = settings();
        s.tcp_fin_timeout = 15;
        let f = TimeWaitSettings.run(&Host::default().status(s.clone()));
        assert_eq!((f[0].id, f[0].severity), (FinTimeoutMisconception, Level::Info));
        assert!(f[0].explanation.contains("FIN_WAIT2"));
        assert!(
            f[0].explanation.contains("fixed at 60 s (TCP_TIMEWAIT_LEN)"),
            "{}",
            f[0].explanation
        );
        // Where the kernel's timer rounds TIME_WAIT up, the model's lifetime is quoted too.
        let host = Host {
            time_wait: Some(crate::linux::TimeWaitLifetime::for_hz(250)),
            ..Host::default()
        };
        let f = TimeWaitSettings.run(&host.status(s));
        assert!(
            f[0].explanation
                .contains("fixed at 60 s (TCP_TIMEWAIT_LEN; 61.0 s on average here"),
            "{}",
            f[0].explanation
        );
    }
}
