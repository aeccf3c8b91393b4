//! `ss` as the oracle: what a namespace holds, from `ss` run inside it, and
//! twscope's JSON grouped the same way, so the two compare with `assert_eq!`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde_json::Value;
use twscope_lab::netns::command_in;

/// Non-zero socket counts by kernel state name.
pub type Counts = BTreeMap<String, u64>;

/// A namespace's sockets, grouped as twscope documents it.
#[derive(Debug, Default, PartialEq)]
pub struct Census {
    /// Non-zero counts per state.
    pub states: Counts,
    /// Per destination (the local port is not a listening one): per state.
    pub outbound: BTreeMap<(IpAddr, u16), Counts>,
    /// Per local listening port: (TIME_WAIT, ESTABLISHED, all).
    pub inbound: BTreeMap<u16, (u64, u64, u64)>,
}

/// `ss ARGS` inside the namespace file `netns`.
pub fn ss_in(netns: &Path, args: &[&str]) -> String {
    let out = command_in(netns, "ss")
        .args(args)
        .output()
        .expect("nsenter (util-linux) runs");
    assert!(
        out.status.success(),
        "ss {args:?} in {}: {}",
        netns.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `ss`'s state words → the kernel names twscope uses.
pub fn kernel_state(ss_state: &str) -> &'static str {
    match ss_state {
        "ESTAB" => "ESTABLISHED",
        "SYN-SENT" => "SYN_SENT",
        "SYN-RECV" => "SYN_RECV",
        "FIN-WAIT-1" => "FIN_WAIT1",
        "FIN-WAIT-2" => "FIN_WAIT2",
        "TIME-WAIT" => "TIME_WAIT",
        "UNCONN" | "CLOSE" => "CLOSE",
        "CLOSE-WAIT" => "CLOSE_WAIT",
        "LAST-ACK" => "LAST_ACK",
        "LISTEN" => "LISTEN",
        "CLOSING" => "CLOSING",
        other => panic!("unknown ss state {other}"),
    }
}

/// `1.2.3.4:80`, `[::1]:80`, `[::ffff:1.2.3.4]:80`, `*:80` → (address, port),
/// IPv4-mapped addresses as IPv4 (as twscope counts them).
pub fn endpoint(text: &str) -> (Option<IpAddr>, u16) {
    let (addr, port) = text.rsplit_once(':').unwrap();
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let addr = addr.split('%').next().unwrap(); // drop an interface scope
    (
        addr.parse::<IpAddr>().ok().map(|a| a.to_canonical()),
        port.parse().unwrap(),
    )
}

/// The census of the namespace at `netns` from `ss -tan` and `ss -tln`.
pub fn ss_census(netns: &Path) -> Census {
    let listening: Vec<u16> = ss_in(netns, &["-Htln"])
        .lines()
        .map(|l| endpoint(l.split_whitespace().nth(3).unwrap()).1)
        .collect();
    let mut c = Census::default();
    for line in ss_in(netns, &["-Htan"]).lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let state = kernel_state(cols[0]);
        *c.states.entry(state.to_string()).or_default() += 1;
        if state == "LISTEN" {
            continue;
        }
        let (_, local_port) = endpoint(cols[3]);
        let (peer, peer_port) = endpoint(cols[4]);
        if listening.contains(&local_port) {
            let entry = c.inbound.entry(local_port).or_default();
            entry.0 += u64::from(state == "TIME_WAIT");
            entry.1 += u64::from(state == "ESTABLISHED");
            entry.2 += 1;
        } else {
            let counts = c.outbound.entry((peer.unwrap(), peer_port)).or_default();
            *counts.entry(state.to_string()).or_default() += 1;
        }
    }
    c
}

/// The non-zero entries of a JSON `states` object.
pub fn nonzero(states: &Value) -> Counts {
    states
        .as_object()
        .unwrap_or_else(|| panic!("states: {states}"))
        .iter()
        .filter(|(_, n)| n.as_u64().unwrap() > 0)
        .map(|(s, n)| (s.clone(), n.as_u64().unwrap()))
        .collect()
}

/// What twscope's `status --json --top 0` object says, grouped as
/// [`ss_census`]; checks each destination's `in_use` is its states' sum.
pub fn reported(ns: &Value) -> Census {
    let outbound = ns["destinations"]
        .as_array()
        .unwrap_or_else(|| panic!("no destinations: {ns}"))
        .iter()
        .map(|d| {
            let states = nonzero(&d["states"]);
            assert_eq!(d["in_use"].as_u64().unwrap(), states.values().sum::<u64>(), "{d}");
            assert_eq!(
                d["time_wait"].as_u64().unwrap(),
                states.get("TIME_WAIT").copied().unwrap_or(0),
                "{d}"
            );
            let key = (
                d["addr"].as_str().unwrap().parse().unwrap(),
                d["port"].as_u64().unwrap() as u16,
            );
            (key, states)
        })
        .collect::<BTreeMap<_, _>>();
    assert_eq!(ns["destinations_total"].as_u64().unwrap(), outbound.len() as u64);
    let inbound = ns["inbound"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let n = |key: &str| i[key].as_u64().unwrap();
            (n("port") as u16, (n("time_wait"), n("established"), n("total")))
        })
        .collect();
    Census {
        states: nonzero(&ns["states"]),
        outbound,
        inbound,
    }
}
