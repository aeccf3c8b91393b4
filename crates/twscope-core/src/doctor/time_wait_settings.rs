//! The TIME_WAIT sysctls: tw_reuse off or loopback-only under pressure,
//! timestamps off (which disables tw_reuse), tw_recycle (breaks NAT), and the
//! common belief that tcp_fin_timeout shortens TIME_WAIT.

use serde_json::json;

use super::{evidence, remedies, Check, Finding, Group, Level};
use crate::capacity::Severity;
use crate::status::{endpoint, Destination, Status};

/// `tw-reuse-off`, `tw-reuse-loopback-only`, `timestamps-off`,
/// `tw-recycle-present`, `fin-timeout-misconception`.
pub struct TimeWaitSettings;

impl Check for TimeWaitSettings {
    fn ids(&self) -> &'static [&'static str] {
        &["tw-reuse-off", "tw-reuse-loopback-only", "timestamps-off", "tw-recycle-present", "fin-timeout-misconception"]
    }

    fn run(&self, status: &Status) -> Vec<Finding> {
        let s = &status.settings;
        let pressured: Vec<&Destination> = status.destinations.iter().filter(|d| d.severity >= Severity::Warning).collect();
        let mut findings = Vec::new();
        let reuse_fix = || {
            let mut settings = vec![("net.ipv4.tcp_tw_reuse", "1".to_string())];
            if s.tcp_timestamps == 0 {
                settings.insert(0, ("net.ipv4.tcp_timestamps", "1".to_string()));
            }
            remedies::sysctls(&settings)
        };
        if let (0, Some(worst)) = (s.tcp_tw_reuse, pressured.first()) {
            findings.push(Finding {
                id: "tw-reuse-off",
                severity: Level::Warning,
                group: Group::System,
                title: format!(
                    "tcp_tw_reuse=0 while {} is short of source ports",
                    endpoint(&worst.addr, worst.port)
                ),
                evidence: evidence([
                    ("tcp_tw_reuse", json!(0)),
                    ("destinations_under_pressure", json!(pressured.len())),
                ]),
                explanation: "With tcp_tw_reuse=1, connect() may take over a TIME_WAIT port to the same destination \
                     once its last timestamp is older than the reuse delay (1 s), instead of waiting 60 s: the \
                     ceiling rises about 60×. It is safe for client connections (timestamps protect against old \
                     duplicates) and affects only outbound connects. It raises the ceiling; fixing the churn is \
                     still the real fix."
                    .to_string(),
                remedies: reuse_fix(),
            });
        }
        let remote: Vec<&&Destination> = pressured
            .iter()
            .filter(|d| d.addr.parse::<std::net::IpAddr>().is_ok_and(|a| !a.is_loopback()) && !d.tw_reuse)
            .collect();
        if let (2, Some(worst)) = (s.tcp_tw_reuse, remote.first()) {
            findings.push(Finding {
                id: "tw-reuse-loopback-only",
                severity: Level::Warning,
                group: Group::System,
                title: format!(
                    "tcp_tw_reuse=2 reuses TIME_WAIT on loopback only, but {} is a remote destination under pressure",
                    endpoint(&worst.addr, worst.port)
                ),
                evidence: evidence([("tcp_tw_reuse", json!(2)), ("remote_destinations_under_pressure", json!(remote.len()))]),
                explanation: "The default, 2, lets connect() take over TIME_WAIT ports only for loopback traffic. \
                     Outbound connections to other hosts wait the full 60 s per port. Set 1 to cover them."
                    .to_string(),
                remedies: reuse_fix(),
            });
        }
        if s.tcp_timestamps == 0 {
            let blocks = s.tcp_tw_reuse != 0 || !pressured.is_empty();
            findings.push(Finding {
                id: "timestamps-off",
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
                id: "tw-recycle-present",
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
        if s.tcp_fin_timeout < 60 {
            findings.push(Finding {
                id: "fin-timeout-misconception",
                severity: Level::Info,
                group: Group::System,
                title: format!("tcp_fin_timeout={} s does not shorten TIME_WAIT", s.tcp_fin_timeout),
                evidence: evidence([("tcp_fin_timeout", json!(s.tcp_fin_timeout)), ("time_wait_s", json!(60))]),
                explanation: "tcp_fin_timeout limits how long an orphaned socket stays in FIN_WAIT2. TIME_WAIT is \
                     fixed at 60 s (TCP_TIMEWAIT_LEN) and no sysctl changes it: lowering fin_timeout frees no \
                     ephemeral port. The levers are connection reuse, tcp_tw_reuse and the port range."
                    .to_string(),
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

    fn busy(dst: &str) -> Host {
        Host::default().outbound("198.18.0.1", dst, 5432, 24_000, 60, 0)
    }

    #[test]
    fn tw_reuse_findings_need_pressure_and_the_right_destination() {
        let mut s = settings();
        s.tcp_tw_reuse = 0;
        assert_eq!(ids(&busy("198.18.0.100").status(s.clone())), ["destination-pressure", "pool-bypass-suspected", "port-range-narrow", "tw-reuse-off"]);
        let f = &TimeWaitSettings.run(&busy("198.18.0.100").status(s.clone()))[0];
        assert_eq!(f.remedies[0].text, "sysctl -w net.ipv4.tcp_tw_reuse=\"1\"\n");
        // No pressure, no finding.
        assert!(TimeWaitSettings.run(&Host::default().status(s.clone())).is_empty());
        // 2 = loopback only: a finding for a remote destination…
        s.tcp_tw_reuse = 2;
        let found = TimeWaitSettings.run(&busy("198.18.0.100").status(s.clone()));
        assert_eq!(found.iter().map(|f| f.id).collect::<Vec<_>>(), ["tw-reuse-loopback-only"]);
        // …none for a loopback one, where 2 already applies.
        assert!(TimeWaitSettings.run(&busy("127.0.0.1").status(s.clone())).is_empty());
    }

    #[test]
    fn timestamps_off_blocks_reuse() {
        let mut s = settings();
        s.tcp_timestamps = 0;
        s.tcp_tw_reuse = 1;
        let f = TimeWaitSettings.run(&Host::default().status(s.clone()));
        assert_eq!(f[0].id, "timestamps-off");
        assert_eq!(f[0].severity, Level::Warning);
        // Under pressure with reuse off too, the tw_reuse fix turns timestamps on first.
        s.tcp_tw_reuse = 0;
        let f = TimeWaitSettings.run(&busy("198.18.0.100").status(s));
        let reuse = f.iter().find(|f| f.id == "tw-reuse-off").unwrap();
        assert!(reuse.remedies[0].text.starts_with("sysctl -w net.ipv4.tcp_timestamps=\"1\"\n"), "{}", reuse.remedies[0].text);
    }

    #[test]
    fn old_kernels_with_recycle_and_without_reuse_delay() {
        let mut s = settings();
        s.tcp_tw_reuse_delay_ms = None; // before 6.14: the 1 s delay is built in
        s.tcp_tw_recycle = Some(1);
        let f = TimeWaitSettings.run(&Host::default().status(s.clone()));
        assert_eq!((f[0].id, f[0].severity), ("tw-recycle-present", Level::Critical));
        assert!(f[0].explanation.contains("NAT"));
        s.tcp_tw_recycle = Some(0);
        assert_eq!(TimeWaitSettings.run(&Host::default().status(s.clone()))[0].severity, Level::Info);
        // tw_reuse=1 on an old kernel still relieves pressure (1 s delay).
        s.tcp_tw_recycle = None;
        s.tcp_tw_reuse = 1;
        assert_eq!(ids(&busy("198.18.0.100").status(s)), ["pool-bypass-suspected"]);
    }

    #[test]
    fn fin_timeout_is_explained_not_blamed() {
        let mut s = settings();
        s.tcp_fin_timeout = 15;
        let f = TimeWaitSettings.run(&Host::default().status(s));
        assert_eq!((f[0].id, f[0].severity), ("fin-timeout-misconception", Level::Info));
        assert!(f[0].explanation.contains("FIN_WAIT2"));
    }
}
