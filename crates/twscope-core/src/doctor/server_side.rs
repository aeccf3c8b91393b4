//! Inbound TIME_WAIT: the server closes first. It costs memory and tw buckets
//! but no ephemeral ports — worth knowing, rarely the outage.

use serde_json::json;

use super::{evidence, Check, Finding, FindingId, Group, Level, Remedy, RemedyKind};
use crate::status::Status;
use crate::text::thousands;

/// From this many TIME_WAIT sockets on one listening port, say so.
const INBOUND_TIME_WAIT: u64 = 1000;

/// `server-side-time-wait`.
pub struct ServerSideTimeWait;

impl Check for ServerSideTimeWait {
    fn ids(&self) -> &'static [FindingId] {
        &[FindingId::ServerSideTimeWait]
    }

    fn run(&self, status: &Status) -> Vec<Finding> {
        status
            .inbound
            .iter()
            .filter(|i| i.time_wait >= INBOUND_TIME_WAIT)
            .map(|i| Finding {
                id: FindingId::ServerSideTimeWait,
                severity: Level::Info,
                group: Group::Diagnosis,
                title: format!(
                    "{} TIME_WAIT sockets on listening port {}: this server closes first",
                    thousands(i.time_wait),
                    i.port
                ),
                evidence: evidence([
                    ("port", json!(i.port)),
                    ("time_wait", json!(i.time_wait)),
                    ("established", json!(i.established)),
                    ("tcp_max_tw_buckets", json!(status.settings.tcp_max_tw_buckets)),
                ]),
                explanation: "Whoever closes a connection first keeps its TIME_WAIT. On the server side that takes \
                     no ephemeral port (the local port is the listener's), but each socket holds memory and a \
                     tw bucket. It means clients are not reusing connections (or the server closes idle \
                     keep-alive connections quickly)."
                    .to_string(),
                remedies: vec![Remedy {
                    kind: RemedyKind::Application,
                    title: "let clients keep connections alive".to_string(),
                    text: "Enable HTTP keep-alive on the clients and raise the server's keep-alive timeout above \
                           the clients' idle timeout, so connections are reused — and, when one is closed, the \
                           client closes first and keeps the TIME_WAIT."
                        .to_string(),
                }],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn busy_listening_ports_are_reported_as_info() {
        let host = Host::default()
            .listener("0.0.0.0", 8080)
            .inbound_time_wait(8080, 5000)
            .inbound_time_wait(9090, 10);
        let f = ServerSideTimeWait.run(&host.status(settings()));
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].severity, f[0].evidence["port"].as_u64()),
            (Level::Info, Some(8080))
        );
        assert!(f[0].title.starts_with("5,000 TIME_WAIT sockets on listening port 8080"));
        assert_eq!(
            (f[0].id, f[0].remedies[0].kind),
            (FindingId::ServerSideTimeWait, RemedyKind::Application)
        );
    }
}
